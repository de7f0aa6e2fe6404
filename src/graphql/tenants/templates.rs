//! Tenant templates over GraphQL (platform operators only).

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use entity::public::tenant_templates;

use crate::{
    audit::Actor,
    graphql::{ContextExt, all_errors, parse_id},
    tenancy::{
        seed::SeedRole,
        templates::{self, TemplateDraft},
    },
};

use super::{inputs::TenantSettingsInput, types::TenantSettings};

/// A role a template adds to each new tenant, with its permission codes.
#[derive(SimpleObject, InputObject, Debug, Clone)]
#[graphql(input_name = "TenantTemplateRoleInput")]
pub struct TenantTemplateRole {
    /// Letters, digits, `_` and `-`; not one of the seeded admin, member, viewer.
    pub name: String,
    /// Known permission codes such as `people:read`.
    pub permissions: Vec<String>,
}

#[derive(InputObject, Debug, Clone)]
pub struct TenantTemplateInput {
    /// 1 to 100 characters, unique without regard to case.
    pub name: String,
    /// The tenant type whose new tenants get this template (at most one template a type); unset:
    /// only tenants naming the template get it.
    pub tenant_type: Option<String>,
    pub settings: Option<TenantSettingsInput>,
    /// Extra roles, besides the seeded admin, member and viewer (at most 20).
    pub roles: Option<Vec<TenantTemplateRole>>,
}

impl From<TenantTemplateInput> for TemplateDraft {
    fn from(input: TenantTemplateInput) -> Self {
        TemplateDraft {
            name: input.name,
            tenant_type: input.tenant_type,
            settings: input.settings.map(Into::into),
            roles: input
                .roles
                .unwrap_or_default()
                .into_iter()
                .map(|role| SeedRole {
                    name: role.name,
                    permissions: role.permissions,
                })
                .collect(),
        }
    }
}

/// Defaults for new tenants: their settings (under the tenant's own) and extra roles.
pub struct TenantTemplate(tenant_templates::Model);

#[Object]
impl TenantTemplate {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn tenant_type(&self) -> Option<&str> {
        self.0.tenant_type.as_deref()
    }
    async fn settings(&self) -> TenantSettings {
        templates::settings_of(&self.0).into()
    }
    async fn roles(&self) -> Vec<TenantTemplateRole> {
        templates::roles_of(&self.0)
            .into_iter()
            .map(|role| TenantTemplateRole {
                name: role.name,
                permissions: role.permissions,
            })
            .collect()
    }
}

#[derive(Default)]
pub struct TemplateQuery;

#[Object]
impl TemplateQuery {
    /// Every tenant template, by name.
    async fn tenant_templates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<TenantTemplate>> {
        ctx.request().require_platform()?;
        let found = templates::list(&ctx.state().db).await?;
        Ok(found.into_iter().map(TenantTemplate).collect())
    }
}

#[derive(Default)]
pub struct TemplateMutation;

#[Object]
impl TemplateMutation {
    /// Saves a template; new tenants of its type (or naming it) get its settings and roles.
    async fn create_tenant_template(
        &self,
        ctx: &Context<'_>,
        input: TenantTemplateInput,
    ) -> async_graphql::Result<TenantTemplate> {
        let request = ctx.request();
        request.require_platform()?;
        let created = templates::create(ctx.state(), &Actor::from(request), input.into())
            .await
            .map_err(|errors| all_errors(ctx, errors))?;
        Ok(TenantTemplate(created))
    }

    /// Replaces the template; tenants already made with it keep what they got.
    async fn update_tenant_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: TenantTemplateInput,
    ) -> async_graphql::Result<TenantTemplate> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("id", &id)?;
        let updated = templates::update(ctx.state(), &Actor::from(request), id, input.into())
            .await
            .map_err(|errors| all_errors(ctx, errors))?;
        Ok(TenantTemplate(updated))
    }

    /// Deletes the template; tenants already made with it keep what they got.
    async fn delete_tenant_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<bool> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("id", &id)?;
        templates::delete(ctx.state(), &Actor::from(request), id).await?;
        Ok(true)
    }
}

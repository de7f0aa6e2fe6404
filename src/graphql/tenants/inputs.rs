use async_graphql::InputObject;
use secrecy::SecretString;

use crate::{
    error::AppError,
    tenancy::{
        admin::TenantPatch,
        registry::TenantQuery,
        validation::{AdminDraft, LimitsDraft, SettingsDraft, TenantDraft},
    },
};

use super::types::TenantStatus;

#[derive(InputObject, Debug, Clone)]
pub struct TenantLimitsInput {
    /// 1 to 10,000.
    pub users: Option<i32>,
    /// 1 to 1,000.
    pub storage_gb: Option<i32>,
    /// Operations the tenant may start per minute (1 to 1,000,000); unset:
    /// `TENANT_RATE_LIMIT_PER_MINUTE`.
    pub requests_per_minute: Option<i32>,
}

#[derive(InputObject, Debug, Clone)]
pub struct TenantSettingsInput {
    /// Any of basic, analytics, reporting, advanced_security, api_access, webhooks.
    pub features: Option<Vec<String>>,
    pub limits: Option<TenantLimitsInput>,
}

/// The tenant's first administrator, created in its schema when provisioned.
#[derive(InputObject, Debug, Clone)]
pub struct TenantAdminInput {
    pub email: String,
    #[graphql(secret)]
    pub password: String,
    pub name: Option<String>,
}

#[derive(InputObject, Debug, Clone)]
pub struct CreateTenantInput {
    pub tenant_name: String,
    /// A hostname (`stmarys.church`) or a slug (`demo-church`).
    pub domain: String,
    pub email: String,
    pub tenant_type: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    /// Defaults to TENANT_SCHEMA_PREFIX + the domain, sanitised.
    pub schema_name: Option<String>,
    pub description: Option<String>,
    pub settings: Option<TenantSettingsInput>,
    /// Create the schema now (default); false only registers the tenant.
    #[graphql(default = true)]
    pub provision_schema: bool,
    /// Migrate the new schema to head and seed it (default).
    #[graphql(default = true)]
    pub run_migrations: bool,
    pub admin: Option<TenantAdminInput>,
    /// Permission codes the tenant's API key may use; default: every permission except
    /// `users:write`.
    pub api_key_permissions: Option<Vec<String>>,
    /// A template to apply by name, whatever the tenant's type; default: the template of the
    /// tenant's type, if there is one.
    pub template: Option<String>,
    /// The database server to place the tenant on (see `databaseServers`; `control` is the
    /// control database); default: the ACTIVE server with the fewest tenants that has room. A
    /// clone goes to its source's server.
    pub server: Option<String>,
}

#[derive(InputObject, Debug, Clone, Default)]
pub struct UpdateTenantInput {
    pub tenant_name: Option<String>,
    pub domain: Option<String>,
    pub email: Option<String>,
    pub tenant_type: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub description: Option<String>,
    /// Features replace the current list; limits change one by one.
    pub settings: Option<TenantSettingsInput>,
    /// `INACTIVE` turns the tenant off (its sessions end), `ACTIVE` back on, as
    /// `deactivateTenant` and `reactivateTenant` do; no other status can be set.
    pub status: Option<TenantStatus>,
    /// A template to apply again, by name: its settings over the tenant's (`settings` given here
    /// still win), and its roles added to the tenant's schema.
    pub template: Option<String>,
}

#[derive(InputObject, Debug, Clone, Default)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub tenant_type: Option<String>,
    /// Case-insensitive text in the name or the domain.
    pub search: Option<String>,
}

impl From<TenantSettingsInput> for SettingsDraft {
    fn from(input: TenantSettingsInput) -> Self {
        SettingsDraft {
            features: input.features,
            limits: input.limits.map(|limits| LimitsDraft {
                users: limits.users,
                storage_gb: limits.storage_gb,
                requests_per_minute: limits.requests_per_minute,
            }),
        }
    }
}

impl From<CreateTenantInput> for TenantDraft {
    fn from(input: CreateTenantInput) -> Self {
        TenantDraft {
            tenant_name: input.tenant_name,
            domain: input.domain,
            email: input.email,
            tenant_type: input.tenant_type,
            phone: input.phone,
            website: input.website,
            address: input.address,
            city: input.city,
            state: input.state,
            schema_name: input.schema_name,
            description: input.description,
            settings: input.settings.map(Into::into),
            admin: input.admin.map(|admin| AdminDraft {
                email: admin.email,
                password: SecretString::from(admin.password),
                name: admin.name,
            }),
            api_key_permissions: input.api_key_permissions,
            template: input.template,
            server: input.server,
        }
    }
}

impl TryFrom<UpdateTenantInput> for TenantPatch {
    type Error = AppError;

    fn try_from(input: UpdateTenantInput) -> Result<Self, AppError> {
        let active = match input.status {
            None => None,
            Some(TenantStatus::Active) => Some(true),
            Some(TenantStatus::Inactive) => Some(false),
            Some(_) => {
                return Err(AppError::bad_input(
                    "status",
                    "only ACTIVE or INACTIVE can be set",
                ));
            }
        };
        Ok(TenantPatch {
            tenant_name: input.tenant_name,
            domain: input.domain,
            email: input.email,
            tenant_type: input.tenant_type,
            phone: input.phone,
            website: input.website,
            address: input.address,
            city: input.city,
            state: input.state,
            description: input.description,
            settings: input.settings.map(Into::into),
            active,
            template: input.template,
            roles: Vec::new(),
        })
    }
}

impl From<TenantFilter> for TenantQuery {
    fn from(filter: TenantFilter) -> Self {
        TenantQuery {
            status: filter.status.map(Into::into),
            tenant_type: filter.tenant_type,
            search: filter.search,
        }
    }
}

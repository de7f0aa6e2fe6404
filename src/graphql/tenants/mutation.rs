use async_graphql::{Context, ID, Object};

use crate::{
    audit::Actor,
    error::AppError,
    graphql::{ContextExt, all_errors, parse_id},
    tenancy::{
        Progress, admin,
        clone::{self, CloneSource},
        guard,
        migrate::{self, MigrationMode},
        migrator::Target,
        provision::{self, ProvisionOptions},
        seed::SeedRole,
        templates,
        validation::{TenantDraft, ValidTenant, validate_new_tenant},
    },
};

use super::{
    inputs::{CreateTenantInput, UpdateTenantInput},
    types::{DeleteTenantResult, MigrationStatus, Tenant, TenantProvisionResult},
};

#[derive(Default)]
pub struct TenantMutation;

#[Object]
impl TenantMutation {
    /// Registers a tenant and (by default) provisions, migrates and seeds its schema. The API key
    /// in the result is shown this once.
    async fn create_tenant(
        &self,
        ctx: &Context<'_>,
        input: CreateTenantInput,
    ) -> async_graphql::Result<TenantProvisionResult> {
        let request = ctx.request();
        request.require_platform()?;
        let provision_schema = input.provision_schema;
        let run_migrations = input.run_migrations;
        let (valid, roles) = validated(ctx, input)
            .await
            .map_err(|faults| all_errors(ctx, faults))?;
        let options = ProvisionOptions {
            provision_schema,
            run_migrations: provision_schema && run_migrations,
            roles,
            ..provision_options(ctx)
        };
        let created = provision::create(ctx.state(), &Actor::from(request), valid, options).await?;
        Ok(TenantProvisionResult::from(created))
    }

    /// Makes a new tenant whose schema has the structure and revision of the tenant
    /// `sourceTenantId` (an `ACTIVE` one) and, with `includeData`, a copy of its rows: its users
    /// (who log in with their passwords, in sessions of their own), people, roles and settings.
    /// The new tenant is made as `createTenant` makes one: its own API key (shown this once),
    /// template and settings from `input`, and nothing left behind when it fails.
    async fn clone_tenant(
        &self,
        ctx: &Context<'_>,
        source_tenant_id: ID,
        input: CreateTenantInput,
        #[graphql(default = false)] include_data: bool,
    ) -> async_graphql::Result<TenantProvisionResult> {
        let request = ctx.request();
        request.require_platform()?;
        let source = parse_id("sourceTenantId", &source_tenant_id);
        let refused: Vec<AppError> = [
            ("provisionSchema", input.provision_schema),
            ("runMigrations", input.run_migrations),
        ]
        .into_iter()
        .filter(|(_, asked)| !asked)
        .map(|(field, _)| {
            AppError::bad_input(
                field,
                format!("a clone is always provisioned and migrated; {field} cannot be false"),
            )
        })
        .collect();
        let (tenant_id, (valid, roles)) = match (source, validated(ctx, input).await) {
            (Ok(tenant_id), Ok(validated)) if refused.is_empty() => (tenant_id, validated),
            (source, validated) => {
                let faults = source.err().into_iter().chain(refused);
                let faults = faults.chain(validated.err().into_iter().flatten());
                return Err(all_errors(ctx, faults.collect()));
            }
        };
        let from = CloneSource {
            tenant_id,
            include_data,
        };
        let options = ProvisionOptions {
            roles,
            ..provision_options(ctx)
        };
        let created =
            clone::clone_tenant(ctx.state(), &Actor::from(request), from, valid, options).await?;
        Ok(TenantProvisionResult::from(created))
    }

    async fn update_tenant(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateTenantInput,
    ) -> async_graphql::Result<Tenant> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("id", &id)?;
        let tenant = admin::update(ctx.state(), &Actor::from(request), id, input.try_into()?)
            .await
            .map_err(|errors| all_errors(ctx, errors))?;
        Ok(Tenant(tenant))
    }

    /// Turns the tenant off: its tokens and API key stop working at once.
    async fn deactivate_tenant(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Tenant> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("id", &id)?;
        Ok(Tenant(
            admin::set_active(ctx.state(), &Actor::from(request), id, false).await?,
        ))
    }

    /// Turns a deactivated tenant back on.
    async fn reactivate_tenant(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Tenant> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("id", &id)?;
        Ok(Tenant(
            admin::set_active(ctx.state(), &Actor::from(request), id, true).await?,
        ))
    }

    /// Deletes the tenant. With `dropSchema` its data goes too, and `confirm` must be the
    /// tenant's `schemaName`; otherwise the schema is kept for a restore and its domain and schema
    /// name stay reserved.
    async fn delete_tenant(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = false)] drop_schema: bool,
        confirm: Option<String>,
    ) -> async_graphql::Result<DeleteTenantResult> {
        let request = ctx.request();
        request.require_platform()?;
        let tenant_id = parse_id("id", &id)?;
        if drop_schema {
            guard::confirm_schema_drop(
                ctx.state(),
                tenant_id,
                confirm.as_deref(),
                "dropping the schema",
            )
            .await?;
        }
        let tenant =
            admin::delete(ctx.state(), &Actor::from(request), tenant_id, drop_schema).await?;
        Ok(DeleteTenantResult {
            tenant_id: id,
            schema_name: tenant.schema_name,
            schema_dropped: drop_schema,
        })
    }

    /// Replaces the tenant's API key and returns the new one, this once; the old key stops
    /// working at once. `permissions` scopes the new key to these permission codes; omitted,
    /// it keeps the old key's scope.
    async fn rotate_api_key(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        permissions: Option<Vec<String>>,
    ) -> async_graphql::Result<String> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("tenantId", &tenant_id)?;
        Ok(admin::rotate_api_key(
            ctx.state(),
            &Actor::from(request),
            id,
            permissions.as_deref(),
        )
        .await?)
    }

    /// Creates the tenant's schema (empty); `forceRecreate` drops an existing one and its data,
    /// and needs `confirm` equal to the tenant's `schemaName`.
    async fn provision_schema(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        #[graphql(default = false)] force_recreate: bool,
        confirm: Option<String>,
    ) -> async_graphql::Result<MigrationStatus> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("tenantId", &tenant_id)?;
        if force_recreate {
            guard::confirm_schema_drop(
                ctx.state(),
                id,
                confirm.as_deref(),
                "recreating the schema",
            )
            .await?;
        }
        let (tenant, migrations) =
            migrate::provision_schema(ctx.state(), &Actor::from(request), id, force_recreate)
                .await?;
        Ok(MigrationStatus::new(&tenant, true, migrations))
    }

    /// Migrates the tenant's schema up or down to `targetRevision`: `head`, `base` (nothing
    /// applied) or a migration name. Reaching head the first time seeds and activates the tenant.
    /// Going below the current revision needs `confirm` equal to the tenant's `schemaName`, and
    /// leaves an `ACTIVE` tenant `INACTIVE` until it is back at head.
    async fn run_migrations(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        #[graphql(default_with = "String::from(\"head\")")] target_revision: String,
        confirm: Option<String>,
    ) -> async_graphql::Result<MigrationStatus> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("tenantId", &tenant_id)?;
        let target = Target::parse("targetRevision", &target_revision)?;
        guard::confirm_single_migration(ctx.state(), id, &target, confirm.as_deref()).await?;
        let (tenant, migrations) = migrate::run_migrations(
            ctx.state(),
            &Actor::from(request),
            id,
            target,
            MigrationMode::Stepwise,
        )
        .await?;
        Ok(MigrationStatus::new(&tenant, true, migrations))
    }
}

/// `input` with its template applied, validated; every fault at once.
async fn validated(
    ctx: &Context<'_>,
    input: CreateTenantInput,
) -> Result<(ValidTenant, Vec<SeedRole>), Vec<AppError>> {
    let state = ctx.state();
    let mut draft = TenantDraft::from(input);
    let applied = templates::apply(&state.db, &mut draft).await;
    let valid = validate_new_tenant(&draft, &state.config.tenant_schema_prefix);
    match (applied, valid) {
        (Ok(roles), Ok(valid)) => Ok((valid, roles)),
        (applied, valid) => Err(applied
            .err()
            .into_iter()
            .chain(valid.err().into_iter().flatten())
            .collect()),
    }
}

/// How a tenant made by a request is provisioned: in full, within `OPERATION_TIMEOUT_SECONDS`.
fn provision_options(ctx: &Context<'_>) -> ProvisionOptions {
    ProvisionOptions {
        provision_schema: true,
        run_migrations: true,
        timeout: ctx.state().config.operation_timeout,
        progress: Progress::none(),
        tenant_id: None,
        admin: None,
        roles: Vec::new(),
        clone_from: None,
    }
}

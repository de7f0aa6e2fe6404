use crate::{
    error::AppError,
    graphql::{ContextExt, MAX_PAGE_SIZE, parse_id},
    tenancy::{health, migrate, registry, servers},
};
use async_graphql::{
    Context, ID, Object,
    connection::{Connection, CursorType, Edge, OpaqueCursor},
};

use super::{
    inputs::TenantFilter,
    types::{MigrationStatus, Tenant, TenantHealth, TotalCount},
};

pub type TenantConnection = Connection<OpaqueCursor<registry::TenantCursor>, Tenant, TotalCount>;

#[derive(Default)]
pub struct TenantQuery;

#[Object]
impl TenantQuery {
    /// The registry, oldest first (platform operators only).
    #[graphql(complexity = "crate::graphql::page_cost(first, 50, child_complexity)")]
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
        filter: Option<TenantFilter>,
    ) -> async_graphql::Result<TenantConnection> {
        ctx.request().require_platform()?;
        let after = after
            .map(|cursor| {
                OpaqueCursor::<registry::TenantCursor>::decode_cursor(&cursor)
                    .map_err(|_| AppError::bad_input("after", "not a cursor of this connection"))
            })
            .transpose()?;
        let limit = first.unwrap_or(50).clamp(1, MAX_PAGE_SIZE) as u64;
        let query = filter.map(Into::into).unwrap_or_default();
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page =
            registry::list(&ctx.state().db, &query, after.as_deref(), limit, with_total).await?;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            page.has_next_page,
            TotalCount {
                total_count: page.total_count.unwrap_or_default(),
            },
        );
        connection
            .edges
            .extend(page.tenants.into_iter().map(|tenant| {
                let cursor = OpaqueCursor(registry::TenantCursor {
                    created_at: tenant.created_at,
                    id: tenant.id,
                });
                Edge::new(cursor, Tenant(tenant))
            }));
        Ok(connection)
    }

    /// One tenant by id or by domain (platform operators only).
    async fn tenant(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        domain: Option<String>,
    ) -> async_graphql::Result<Option<Tenant>> {
        ctx.request().require_platform()?;
        let db = &ctx.state().db;
        let found = match (id, domain) {
            (Some(id), None) => registry::find_live(db, parse_id("id", &id)?).await.ok(),
            (None, Some(domain)) => registry::find_live_by_domain(db, &domain).await?,
            _ => return Err(AppError::bad_input("id", "give either id or domain").into()),
        };
        Ok(found.map(Tenant))
    }

    /// Where the tenant's schema stands in its migration history.
    async fn migration_status(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> async_graphql::Result<MigrationStatus> {
        ctx.request().require_platform()?;
        let (tenant, exists, migrations) =
            migrate::migration_status(ctx.state(), parse_id("tenantId", &tenant_id)?).await?;
        Ok(MigrationStatus::new(&tenant, exists, migrations))
    }

    /// Whether the tenant's schema is complete and agrees with the registry.
    async fn tenant_health(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> async_graphql::Result<TenantHealth> {
        ctx.request().require_platform()?;
        let state = ctx.state();
        let tenant = registry::find_live(&state.db, parse_id("tenantId", &tenant_id)?).await?;
        let report = health::check(&servers::pool_of(state, &tenant).await?, &tenant).await;
        Ok(TenantHealth {
            tenant_id,
            status: report.status.into(),
            schema_exists: report.schema_exists,
            missing_tables: report.missing_tables,
            revision_matches: report.revision_matches,
            drifted: report.drifted,
            db_accessible: report.db_accessible,
        })
    }

    /// Schemas in the database that belong to no tenant of the registry; they are never reused
    /// silently and are left for an operator to inspect.
    async fn orphan_schemas(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        ctx.request().require_platform()?;
        Ok(registry::orphan_schemas(&ctx.state().db).await?)
    }
}

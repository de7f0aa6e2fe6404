//! Migrating every tenant: find who is behind in one query, then migrate them with bounded
//! parallelism, each tenant on its own so one failure does not stop the others.

use std::time::{Duration, Instant};

use entity::public::tenants;
use futures_util::{StreamExt, stream};
use migration::tenant_migration_names;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::ExprTrait};

use crate::{
    audit::Actor,
    error::{AppError, AppResult},
    state::SharedState,
    tenancy::{
        lifecycle,
        migrator::{SchemaMigrations, Target},
    },
};

/// What happened to one tenant of a fleet migration.
pub struct FleetResult {
    pub tenant: tenants::Model,
    pub outcome: Result<SchemaMigrations, AppError>,
    pub duration: Duration,
}

/// Live tenants with a schema whose recorded revision is not `target`: one registry query,
/// whatever the number of tenants.
pub async fn tenants_behind(
    state: &SharedState,
    target: &Target,
) -> AppResult<Vec<tenants::Model>> {
    let names = tenant_migration_names();
    let wanted = match target {
        Target::Head => names.last().cloned(),
        Target::Base => None,
        Target::Revision(name) => Some(name.clone()),
    };
    let behind = match wanted {
        Some(revision) => tenants::Column::CurrentRevision
            .ne(revision)
            .or(tenants::Column::CurrentRevision.is_null()),
        None => tenants::Column::CurrentRevision.is_not_null(),
    };
    Ok(tenants::Entity::find()
        .filter(tenants::Column::DeletedAt.is_null())
        .filter(tenants::Column::SchemaProvisioned.eq(true))
        .filter(behind)
        .order_by_asc(tenants::Column::CreatedAt)
        .all(&state.db)
        .await?)
}

/// Migrates `tenants` to `target`, at most `concurrency` at a time, reporting each as it ends.
pub async fn migrate_fleet(
    state: &SharedState,
    actor: &Actor,
    tenants: Vec<tenants::Model>,
    target: &Target,
    concurrency: usize,
    on_done: impl Fn(&FleetResult),
) -> Vec<FleetResult> {
    let mut running = stream::iter(tenants)
        .map(|tenant| async move {
            let started = Instant::now();
            let outcome = lifecycle::run_migrations(state, actor, tenant.id, target.clone())
                .await
                .map(|(_, migrations)| migrations);
            FleetResult {
                tenant,
                outcome,
                duration: started.elapsed(),
            }
        })
        .buffer_unordered(concurrency.max(1));
    let mut results = Vec::new();
    while let Some(result) = running.next().await {
        on_done(&result);
        results.push(result);
    }
    results
}

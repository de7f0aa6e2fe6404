//! Taking over batches that no live server runs: a batch whose lock is free has lost its
//! server (it died, or drained and stopped), and whichever live server notices first runs the
//! rest of it (`super::runner` undoes and redoes what was half-way).

use anyhow::Context;
use chrono::Utc;
use entity::public::{provisioning_batches, provisioning_jobs, tenants};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityName, EntityTrait, QueryFilter, Statement,
    TransactionTrait,
};
use uuid::Uuid;

use crate::{
    audit::Actor,
    batch::{lock::BatchLock, runner::Runner},
    primitives::locks,
    state::SharedState,
    tenancy::{TenantStatus, admin, registry},
};

/// Takes over every unfinished batch whose lock is free, each in a run of its own. Returns how
/// many it took over. A draining server takes none.
pub async fn take_over_unfinished(state: &SharedState) -> anyhow::Result<usize> {
    if state.batches.is_draining() {
        return Ok(0);
    }
    // Only batches whose lock nobody holds are worth a connection of their own to try.
    let sql = format!(
        "SELECT b.id FROM public.provisioning_batches b \
         WHERE b.finished_at IS NULL AND NOT {} \
         ORDER BY b.created_at",
        locks::session_lock_held(&locks::batch_key_sql("b.id"))
    );
    let candidates: Vec<Uuid> = state
        .db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<Uuid>(0))
        .collect::<Result<_, _>>()?;
    let mut taken = 0;
    for batch_id in candidates {
        if state.batches.is_draining() {
            break;
        }
        let Some(lock) = BatchLock::try_acquire(state, batch_id).await? else {
            continue; // a live server took it first
        };
        // It may have finished between the look and the lock.
        let batch = provisioning_batches::Entity::find_by_id(batch_id)
            .one(&state.db)
            .await?
            .filter(|batch| batch.finished_at.is_none());
        let Some(batch) = batch else {
            lock.release().await;
            continue;
        };
        let runner = match Runner::new(state.clone(), Actor::system(), &batch) {
            Ok(runner) => runner,
            Err(err) => {
                lock.release().await;
                return Err(anyhow::Error::new(err).context(format!("resuming batch {batch_id}")));
            }
        };
        tracing::warn!(batch = %batch_id, kind = batch.kind.name(), "taking over a batch no live server runs");
        state.batches.run(runner.run(lock));
        taken += 1;
    }
    Ok(taken)
}

/// Tenants left `PROVISIONING` by a server that stopped mid-way (outside any batch): their
/// schema never committed, so only the registry row is left, and it goes. A tenant still being
/// provisioned by a live server is recent, and holds its schema's lock, so it is never touched;
/// nor is one of an unfinished batch, which its batch undoes and makes again when resumed.
pub async fn recover_stalled_tenants(state: &SharedState) -> anyhow::Result<usize> {
    let stalled_before =
        Utc::now() - chrono::Duration::from_std(state.config.operation_timeout * 2)?;
    let stalled = tenants::Entity::find()
        .filter(tenants::Column::Status.eq(TenantStatus::Provisioning.as_db()))
        .filter(tenants::Column::UpdatedAt.lt(stalled_before.fixed_offset()))
        .filter(
            tenants::Column::Id.not_in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(provisioning_jobs::Column::TenantId)
                    // The entity's table reference, schema and all: the pool's search path
                    // has none of ours.
                    .from(provisioning_jobs::Entity.table_ref())
                    .and_where(provisioning_jobs::Column::TenantId.is_not_null())
                    .and_where(provisioning_jobs::Column::FinishedAt.is_null())
                    .to_owned(),
            ),
        )
        .all(&state.db)
        .await?;
    let mut recovered = 0;
    for tenant in stalled {
        let schema = registry::schema_of(&tenant);
        // The lock is held where the schema is being made: on the tenant's server.
        let txn = state
            .servers
            .pool(tenant.server_name.as_deref())
            .await?
            .begin()
            .await?;
        if !crate::tenancy::migrator::try_lock_schema(&txn, &schema).await? {
            continue;
        }
        txn.commit().await?;
        admin::delete(state, &Actor::system(), tenant.id, true)
            .await
            .with_context(|| format!("undoing stalled tenant {}", tenant.id))?;
        tracing::warn!(tenant = %tenant.id, domain = %tenant.domain, "removed a tenant left half-provisioned by a stopped server");
        recovered += 1;
    }
    Ok(recovered)
}

//! Finishing batches that a dead server left unfinished. A batch whose lock nobody holds has no
//! live runner: each of its unfinished tenants is kept if it reached `ACTIVE` (provisioning) or
//! left as its migration's transaction left it, and otherwise undone, and the batch ends with the
//! truth.

use anyhow::Context;
use chrono::Utc;
use entity::public::{provisioning_batches, provisioning_jobs, tenants};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

use crate::{
    audit::Actor,
    batch::{BatchKind, BatchStatus, JobStatus, lock::BatchLock},
    state::SharedState,
    tenancy::{TenantStatus, admin, registry},
};

const INTERRUPTED: &str = "interrupted: the server running the batch stopped";

/// Finishes every unfinished batch that no live server runs. Returns how many it finished.
pub async fn recover_unfinished(state: &SharedState) -> anyhow::Result<usize> {
    let unfinished = provisioning_batches::Entity::find()
        .filter(provisioning_batches::Column::FinishedAt.is_null())
        .all(&state.db)
        .await?;
    let mut recovered = 0;
    for batch in unfinished {
        let Some(lock) = BatchLock::try_acquire(state, batch.id).await? else {
            continue; // a live server runs it
        };
        recover(state, &batch).await?;
        lock.release().await;
        recovered += 1;
    }
    Ok(recovered)
}

#[tracing::instrument(name = "recover batch", skip_all, fields(batch_id = %batch.id, kind = batch.kind.name()))]
async fn recover(state: &SharedState, batch: &provisioning_batches::Model) -> anyhow::Result<()> {
    let kind = batch.kind;
    let jobs = provisioning_jobs::Entity::find()
        .filter(provisioning_jobs::Column::BatchId.eq(batch.id))
        .all(&state.db)
        .await?;
    let actor = Actor::system();
    for job in jobs.iter().filter(|job| !job.status.is_finished()) {
        let tenant = match job.tenant_id {
            Some(id) => tenants::Entity::find_by_id(id).one(&state.db).await?,
            None => None,
        };
        let (status, message) = match (kind, tenant) {
            (BatchKind::Provision, Some(tenant)) if tenant.status == TenantStatus::Active => {
                (JobStatus::Succeeded, None)
            }
            (BatchKind::Provision, Some(tenant)) => {
                // Half made: the schema (if any) and the registry row go.
                admin::delete(state, &actor, tenant.id, true)
                    .await
                    .with_context(|| format!("undoing tenant {}", tenant.id))?;
                (
                    JobStatus::Failed,
                    Some(format!("{INTERRUPTED}; the tenant was rolled back")),
                )
            }
            (BatchKind::Provision, None) => (JobStatus::Failed, Some(INTERRUPTED.to_owned())),
            // A fleet migration moves each tenant in one transaction with its registry record:
            // an interrupted one rolled back, so the schema is where it started (or, if it
            // committed just before the stop, at the target), and the registry says which.
            (BatchKind::Migrate, _) => (
                JobStatus::Failed,
                Some(format!(
                    "{INTERRUPTED}; the schema stays at its last completed migration"
                )),
            ),
        };
        provisioning_jobs::Entity::update(provisioning_jobs::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(job.id),
            status: Set(status),
            error_code: Set(message.as_ref().map(|_| "INTERNAL".to_owned())),
            error_message: Set(message),
            finished_at: Set(Some(Utc::now().fixed_offset())),
            ..Default::default()
        })
        .exec(&state.db)
        .await?;
    }

    let jobs = provisioning_jobs::Entity::find()
        .filter(provisioning_jobs::Column::BatchId.eq(batch.id))
        .all(&state.db)
        .await?;
    let count = |status: JobStatus| jobs.iter().filter(|job| job.status == status).count() as i32;
    let (successful, failed) = (count(JobStatus::Succeeded), count(JobStatus::Failed));
    let status = match (successful, failed) {
        (_, 0) => BatchStatus::Succeeded,
        (0, _) => BatchStatus::Failed,
        _ => BatchStatus::PartiallyFailed,
    };
    provisioning_batches::Entity::update(provisioning_batches::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(batch.id),
        status: Set(status),
        successful: Set(successful),
        failed: Set(failed),
        finished_at: Set(Some(Utc::now().fixed_offset())),
        ..Default::default()
    })
    .exec(&state.db)
    .await?;
    tracing::warn!(batch = %batch.id, status = <&str>::from(status), successful, failed, "finished a batch left unfinished by a stopped server");
    Ok(())
}

/// Tenants left `PROVISIONING` by a server that stopped mid-way (outside any batch): their
/// schema never committed, so only the registry row is left, and it goes. A tenant still being
/// provisioned by a live server is recent, and holds its schema's lock, so it is never touched.
pub async fn recover_stalled_tenants(state: &SharedState) -> anyhow::Result<usize> {
    let stalled_before =
        Utc::now() - chrono::Duration::from_std(state.config.operation_timeout * 2)?;
    let stalled = tenants::Entity::find()
        .filter(tenants::Column::Status.eq(TenantStatus::Provisioning.as_db()))
        .filter(tenants::Column::UpdatedAt.lt(stalled_before.fixed_offset()))
        .all(&state.db)
        .await?;
    let mut recovered = 0;
    for tenant in stalled {
        let schema = registry::schema_of(&tenant);
        let txn = state.db.begin().await?;
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

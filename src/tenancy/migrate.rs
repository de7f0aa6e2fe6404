//! A registered tenant's schema after registration: creating it by hand (`provisionSchema`),
//! migrating it up or down (`runMigrations`, fleet batches), recording the revision it reached in
//! the registry and, the first time it reaches head, seeding and activating the tenant.
//!
//! The per-schema migration machinery itself (ledger, locks, steps) is [`super::migrator`].

use entity::public::tenants;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseTransaction, FromQueryResult, TransactionTrait,
    TryIntoModel,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::{self, Actor},
    db::pinned::run_script,
    error::{AppError, AppResult},
    primitives::schema_name::SchemaName,
    state::SharedState,
    tenancy::{
        Progress, Step, StepStatus, TenantStatus, guard,
        migrator::{self, MigrationFailure, SchemaMigrations, Target},
        record_tenant,
        registry::{
            find_live, missing_tables, schema_of, update_registry, update_registry_in,
            update_registry_sql,
        },
        rendered, run_detached,
        seed::{PendingAdmin, SeedRole, seed_schema},
        servers,
    },
    webhooks::{Event, outbox},
};

/// Creates the tenant's schema, or with `force_recreate` drops and recreates it empty.
#[tracing::instrument(
    name = "provision tenant schema",
    skip_all,
    fields(tenant_id = %tenant_id, schema = tracing::field::Empty)
)]
pub async fn provision_schema(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    force_recreate: bool,
) -> AppResult<(tenants::Model, SchemaMigrations)> {
    let tenant = find_live(&state.db, tenant_id).await?;
    record_tenant(&tenant);
    let schema = schema_of(&tenant);
    let task_schema = schema.clone();
    let schema_db = servers::pool_of(state, &tenant).await?;
    let task_db = schema_db.clone();
    let result = run_detached("schema", async move {
        let txn = task_db.begin().await?;
        migrator::lock_schema(&txn, &task_schema).await?;
        let exists = migrator::schema_exists(&txn, &task_schema).await?;
        if exists && force_recreate {
            txn.execute_unprepared(&format!("DROP SCHEMA {} CASCADE", task_schema.quoted()))
                .await?;
        }
        if !exists || force_recreate {
            txn.execute_unprepared(&format!("CREATE SCHEMA {}", task_schema.quoted()))
                .await?;
        }
        txn.commit().await?;
        AppResult::Ok(!exists || force_recreate)
    })
    .await?;
    let created = match result {
        Ok(created) => created,
        Err(err) => {
            audit::failure(
                &state.db,
                actor,
                "tenant.provision_schema",
                Some(tenant.id),
                &err,
            )
            .await;
            return Err(err);
        }
    };
    let recreated = created && tenant.schema_provisioned;
    let tenant = update_registry(state, tenant.id, |row| {
        row.schema_provisioned = Set(true);
        if created {
            row.current_revision = Set(None);
            row.migrations_applied = Set(false);
        }
        if recreated && tenant.status != TenantStatus::Inactive {
            row.status = Set(TenantStatus::Pending);
        }
    })
    .await?;
    servers::mark_placement(state, &tenant, tenant.status).await?;
    audit::tenant_success(
        &state.db,
        actor,
        "tenant.provision_schema",
        &tenant,
        json!({ "created": created, "forceRecreate": force_recreate }),
    )
    .await;
    let migrations = migrator::status(&schema_db, &schema).await?;
    Ok((tenant, migrations))
}

/// Migrates the tenant's schema up or down to `target`. A failing migration leaves the schema at
/// the last good revision ([`MigrationMode::Stepwise`]) or where it started
/// ([`MigrationMode::Whole`]), and the registry says so.
pub async fn run_migrations(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    target: Target,
    mode: MigrationMode,
) -> AppResult<(tenants::Model, SchemaMigrations)> {
    let tenant = find_live(&state.db, tenant_id).await?;
    migrate_tenant(state, actor, tenant, target, mode).await
}

/// [`run_migrations`] of a tenant as just read from the registry.
#[tracing::instrument(
    name = "migrate tenant",
    skip_all,
    fields(tenant_id = %tenant.id, schema = tracing::field::Empty)
)]
pub async fn migrate_tenant(
    state: &SharedState,
    actor: &Actor,
    tenant: tenants::Model,
    target: Target,
    mode: MigrationMode,
) -> AppResult<(tenants::Model, SchemaMigrations)> {
    record_tenant(&tenant);
    let tenant_id = tenant.id;
    let schema = schema_of(&tenant);
    let task_state = state.clone();
    let task_actor = actor.clone();
    let result = run_detached("migration", async move {
        // One round trip holds the registry's record with the steps: on the control database
        // only. A schema that is not there makes it step aside too, to be told apart below.
        if mode == MigrationMode::Whole
            && tenant.server_name.is_none()
            && let Some(moved) =
                migrate_in_one_trip(&task_state, &task_actor, &tenant, &schema, &target).await
        {
            return Ok(moved);
        }
        let schema_db = servers::pool_of(&task_state, &tenant).await?;
        if !migrator::schema_exists(&schema_db, &schema)
            .await
            .map_err(|err| {
                task_state
                    .servers
                    .failed(tenant.server_name.as_deref(), err)
            })?
        {
            return Err(AppError::bad_input(
                "tenantId",
                "the tenant's schema is not provisioned; run provisionSchema first",
            ));
        }
        Ok(match mode {
            MigrationMode::Stepwise => {
                let migrated = migrator::migrate_to(&schema_db, &schema, &target).await;
                let (reached, succeeded_by) = match &migrated {
                    Ok(reached) => (reached.clone(), Some(&task_actor)),
                    Err(failure) => (failure.reached.clone(), None),
                };
                let recorded =
                    finish_when_at_head(&task_state, succeeded_by, &tenant, &reached).await;
                (migrated, recorded)
            }
            MigrationMode::Whole => {
                migrate_whole(&task_state, &task_actor, &tenant, &schema, &target).await
            }
        })
    })
    .await??;
    match result {
        (Ok(reached), Ok(tenant)) => Ok((tenant, reached)),
        (
            Err(MigrationFailure {
                failed_migration,
                reached,
                source,
            }),
            _,
        ) => {
            tracing::warn!(tenant = %tenant_id, migration = %failed_migration, error = %source, "tenant migration failed");
            let err = AppError::Failed {
                step: Step::Migrate.name(),
                transient: crate::error::is_transient_db_error(&source),
                reference: None,
                message: format!(
                    "migration {failed_migration} failed; the schema stays at revision {}",
                    reached.current_revision().unwrap_or("base")
                ),
            };
            audit::failure(&state.db, actor, "tenant.migrate", Some(tenant_id), &err).await;
            Err(err)
        }
        (Ok(_), Err((step, err))) => {
            audit::failure(&state.db, actor, "tenant.migrate", Some(tenant_id), &err).await;
            let (detail, reference) = err.client_message();
            Err(AppError::Failed {
                step: step.name(),
                transient: err.is_transient(),
                reference,
                message: format!(
                    "the schema was migrated but {} failed: {detail}",
                    step.name()
                ),
            })
        }
    }
}

/// How `run_migrations` commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// Each migration in its own transaction: a failure stops at the last good revision.
    Stepwise,
    /// Every step and the registry's record in one transaction: a failure leaves the schema
    /// where it started. One commit per tenant, for fleet migrations.
    Whole,
}

/// [`MigrationMode::Whole`]: the schema's steps, its registry record, (at head, for a tenant
/// being set up) its seed and the audit of the migration, committed together.
async fn migrate_whole(
    state: &SharedState,
    actor: &Actor,
    tenant: &tenants::Model,
    schema: &SchemaName,
    target: &Target,
) -> (
    Result<SchemaMigrations, MigrationFailure>,
    Result<tenants::Model, (Step, AppError)>,
) {
    let not_started = |source: sea_orm::DbErr| {
        (
            Err(MigrationFailure {
                failed_migration: String::new(),
                reached: SchemaMigrations::pending_all(),
                source,
            }),
            Err((
                Step::Migrate,
                AppError::internal(anyhow::anyhow!("not migrated")),
            )),
        )
    };
    let (txn, elsewhere) = match servers::begin_placed(state, tenant).await {
        Ok(begun) => begun,
        Err(err) => return not_started(sea_orm::DbErr::Custom(err.client_message().0)),
    };
    if let Err(err) = migrator::pin_and_lock(&txn, schema).await {
        return not_started(err);
    }
    let reached = match migrator::migrate_whole_in(&txn, target).await {
        Ok(reached) => reached,
        Err(failure) => {
            let _ = txn.rollback().await;
            return (
                Err(failure),
                Err((
                    Step::Migrate,
                    AppError::internal(anyhow::anyhow!("not migrated")),
                )),
            );
        }
    };
    let recorded = async {
        let registry = elsewhere.as_ref().unwrap_or(&txn);
        let tenant = record_revision_in(registry, tenant, &reached)
            .await
            .map_err(|e| (Step::Register, e))?;
        let tenant = if reached.at_head() {
            activate_in(&txn, registry, schema, &tenant, &Progress::none()).await?
        } else {
            tenant
        };
        audit_migrated(registry, actor, &tenant, &reached).await;
        servers::commit_placed(txn, elsewhere, &tenant)
            .await
            .map_err(|e| (Step::Register, e))?;
        Ok(tenant)
    }
    .await;
    state.directory.forget(tenant.id).await;
    (Ok(reached), recorded)
}

/// [`migrate_whole`] in one round trip: the steps pre-rendered ([`rendered`]), their ledger
/// rows, the registry's record and the migration's audit sent as one script. `None` when the
/// migrator has to do it: a step on the way cannot be pre-rendered, the tenant is still being set
/// up (reaching head seeds it), or the schema's ledger is not at the revision the registry
/// records for it (the script checks that under the schema's migration lock, before any step).
async fn migrate_in_one_trip(
    state: &SharedState,
    actor: &Actor,
    tenant: &tenants::Model,
    schema: &SchemaName,
    target: &Target,
) -> Option<(
    Result<SchemaMigrations, MigrationFailure>,
    Result<tenants::Model, (Step, AppError)>,
)> {
    if is_setting_up(tenant) {
        return None;
    }
    let from = match tenant.current_revision.as_deref() {
        None => Target::Base,
        Some(revision) => Target::parse("currentRevision", revision).ok()?,
    };
    let (from, to) = (from.applied_count(), target.applied_count());
    let reached = SchemaMigrations::first_applied(to);
    // The audit row names the tenant as the record leaves it.
    let mut recorded_row = tenants::ActiveModel::from(tenant.clone());
    revision_change(tenant, &reached)(&mut recorded_row);
    let audited = audit::tenant_success_script(
        actor,
        "tenant.migrate",
        &recorded_row.try_into_model().ok()?,
        json!({ "revision": reached.current_revision() }),
    );
    // The record comes last: its row is the script's answer.
    let record = update_registry_sql(tenant.id, revision_change(tenant, &reached));
    let script = rendered::script(schema, from, to, &format!("{audited};\n{record}")).await?;
    let moved = match run_script(&state.db, script).await {
        Ok(rows) => {
            let recorded = rows
                .last()
                .map(|row| tenants::Model::from_query_result(row, ""))
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("the registry row is gone")))
                .and_then(|row| Ok(row?))
                .map_err(|e| (Step::Register, e));
            (Ok(reached), recorded)
        }
        Err(err) if rendered::ledger_moved(&err) => return None,
        Err(source) => (
            Err(MigrationFailure {
                failed_migration: format!("towards {target:?}"),
                reached: SchemaMigrations::first_applied(from),
                source,
            }),
            Err((
                Step::Migrate,
                AppError::internal(anyhow::anyhow!("not migrated")),
            )),
        ),
    };
    state.directory.forget(tenant.id).await;
    Some(moved)
}

/// Audits (and announces) a finished migration inside the transaction that records it.
async fn audit_migrated(
    txn: &DatabaseTransaction,
    actor: &Actor,
    tenant: &tenants::Model,
    reached: &SchemaMigrations,
) {
    audit::tenant_success(
        txn,
        actor,
        "tenant.migrate",
        tenant,
        json!({ "revision": reached.current_revision() }),
    )
    .await;
}

/// Records a migrated schema's revision in the registry; at head, a tenant still being set up
/// is seeded, verified and activated in the same transaction. A migration that reached its
/// target (`succeeded_by` names who asked for it) is audited there too.
async fn finish_when_at_head(
    state: &SharedState,
    succeeded_by: Option<&Actor>,
    tenant: &tenants::Model,
    migrations: &SchemaMigrations,
) -> Result<tenants::Model, (Step, AppError)> {
    let schema = schema_of(tenant);
    let in_txn = async {
        let (txn, elsewhere) = servers::begin_placed(state, tenant)
            .await
            .map_err(|e| (Step::Register, e))?;
        let registry = elsewhere.as_ref().unwrap_or(&txn);
        let tenant = record_revision_in(registry, tenant, migrations)
            .await
            .map_err(|e| (Step::Register, e))?;
        let tenant = if migrations.at_head() {
            activate_in(&txn, registry, &schema, &tenant, &Progress::none()).await?
        } else {
            tenant
        };
        if let Some(actor) = succeeded_by {
            audit_migrated(registry, actor, &tenant, migrations).await;
        }
        servers::commit_placed(txn, elsewhere, &tenant)
            .await
            .map_err(|e| (Step::Register, e))?;
        Ok(tenant)
    };
    let result = in_txn.await;
    state.directory.forget(tenant.id).await;
    result
}

/// Records in the registry, inside `txn`, the revision a schema reached and whether it is at head.
/// An `ACTIVE` tenant left below head is parked `INACTIVE` until it is back ([`guard`]).
pub(super) async fn record_revision_in(
    txn: &DatabaseTransaction,
    tenant: &tenants::Model,
    migrations: &SchemaMigrations,
) -> AppResult<tenants::Model> {
    update_registry_in(txn, tenant.id, revision_change(tenant, migrations)).await
}

/// The registry change of [`record_revision_in`].
fn revision_change(
    tenant: &tenants::Model,
    migrations: &SchemaMigrations,
) -> impl FnOnce(&mut tenants::ActiveModel) {
    let revision = migrations.current_revision().map(str::to_owned);
    let at_head = migrations.at_head();
    let active = tenant.status == TenantStatus::Active;
    let parked = guard::parked_below_head(tenant);
    move |row| {
        if !at_head && (active || parked) {
            row.status = Set(TenantStatus::Inactive);
            row.failure_reason = Set(Some(guard::below_head_reason(revision.as_deref())));
        } else if at_head && parked {
            row.status = Set(TenantStatus::Active);
            row.failure_reason = Set(None);
        }
        row.schema_provisioned = Set(true);
        row.current_revision = Set(revision);
        row.migrations_applied = Set(at_head);
    }
}

/// Seeds, verifies and activates a tenant that is still being set up, inside `txn` (pinned to
/// its schema, migrated to head), and announces it provisioned, in `registry` (the same
/// transaction, or the control database's when the tenant lives on another server). Active and
/// deactivated tenants are left as they are.
pub(super) async fn activate_in(
    txn: &DatabaseTransaction,
    registry: &DatabaseTransaction,
    schema: &SchemaName,
    tenant: &tenants::Model,
    progress: &Progress,
) -> Result<tenants::Model, (Step, AppError)> {
    if !is_setting_up(tenant) {
        return Ok(tenant.clone());
    }
    progress.report(Step::Seed, StepStatus::Started, None);
    let admin: Option<PendingAdmin> = tenant
        .pending_admin
        .clone()
        .and_then(|value| serde_json::from_value(value).ok());
    let roles: Vec<SeedRole> = tenant
        .pending_roles
        .clone()
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default();
    seed_schema(
        txn,
        &tenant.tenant_name,
        &tenant.settings,
        admin.as_ref(),
        &roles,
    )
    .await
    .map_err(|e| (Step::Seed, e.into()))?;
    progress.report(Step::Seed, StepStatus::Succeeded, None);
    progress.report(Step::Verify, StepStatus::Started, None);
    let missing = missing_tables(txn, schema)
        .await
        .map_err(|e| (Step::Verify, e))?;
    if !missing.is_empty() {
        return Err((
            Step::Verify,
            AppError::internal(anyhow::anyhow!(
                "tables missing after migration: {missing:?}"
            )),
        ));
    }
    let activated = update_registry_in(registry, tenant.id, |row| {
        row.status = Set(TenantStatus::Active);
        row.pending_admin = Set(None);
        row.pending_roles = Set(None);
        row.failure_reason = Set(None);
    })
    .await
    .map_err(|e| (Step::Verify, e))?;
    outbox::enqueue(
        registry,
        Event::TenantProvisioned,
        outbox::tenant_data(&activated),
    )
    .await
    .map_err(|e| (Step::Verify, e.into()))?;
    progress.report(Step::Verify, StepStatus::Succeeded, None);
    Ok(activated)
}

/// A tenant not yet active for the first time: reaching head seeds and activates it.
fn is_setting_up(tenant: &tenants::Model) -> bool {
    matches!(
        tenant.status,
        TenantStatus::Pending | TenantStatus::Provisioning | TenantStatus::Failed
    )
}

/// The tenant, whether its schema exists, and the schema's migration state.
pub async fn migration_status(
    state: &SharedState,
    tenant_id: Uuid,
) -> AppResult<(tenants::Model, bool, SchemaMigrations)> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let schema = schema_of(&tenant);
    let schema_db = servers::pool_of(state, &tenant).await?;
    let server = tenant.server_name.as_deref();
    let exists = migrator::schema_exists(&schema_db, &schema)
        .await
        .map_err(|err| state.servers.failed(server, err))?;
    let migrations = migrator::status(&schema_db, &schema)
        .await
        .map_err(|err| state.servers.failed(server, err))?;
    Ok((tenant, exists, migrations))
}

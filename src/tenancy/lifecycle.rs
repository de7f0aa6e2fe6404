//! The tenant life cycle: register, provision (schema → migrations → seed → verify), migrate,
//! deactivate, delete, rotate keys. States move `PENDING → PROVISIONING → ACTIVE` (or `FAILED`);
//! whatever fails on the way is undone, so no input, race or error leaves a half-made tenant.
//!
//! Work that changes a schema runs in a task of its own: a client that disconnects mid-way does
//! not cancel it half done.

use chrono::Utc;
use entity::public::tenants;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, EntityTrait, IntoActiveModel, QueryFilter, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Outcome},
    auth::api_keys,
    db::pinned::begin_in_schema,
    error::{AppError, AppResult},
    state::{AppState, SharedState},
    tenancy::{
        Progress, Step, StepStatus, TenantStatus,
        migrator::{self, MigrationFailure, SchemaMigrations, Target},
        naming::SchemaName,
        seed::{PendingAdmin, seed_schema},
        validation::{SettingsDraft, TenantDraft, ValidTenant, validate_new_tenant},
    },
};

/// How far `create` goes, and how long it may take.
#[derive(Clone)]
pub struct ProvisionOptions {
    pub provision_schema: bool,
    pub run_migrations: bool,
    /// Limit for making the schema; past it everything made is rolled back.
    pub timeout: std::time::Duration,
    pub progress: Progress,
    /// The new tenant's id, when the caller must know it before the tenant exists (a batch
    /// records it first, so that a crash can be cleaned up after).
    pub tenant_id: Option<Uuid>,
}

/// A registered tenant and what was done for it.
pub struct Created {
    pub tenant: tenants::Model,
    /// Shown once; only its hash is stored.
    pub api_key: String,
    pub schema_created: bool,
    pub migrations: SchemaMigrations,
    pub message: String,
}

/// A provisioning step that failed, and what it had made so far.
struct StepFailure {
    step: Step,
    detail: String,
    schema_created: bool,
    /// Worth trying again (a lost connection, a lock timeout, a deadlock, a time-out).
    transient: bool,
}

/// Registers a validated tenant and, as asked, provisions and migrates its schema.
pub async fn create(
    state: &SharedState,
    actor: &Actor,
    valid: ValidTenant,
    options: ProvisionOptions,
) -> AppResult<Created> {
    let db = &state.db;
    if migrator::schema_exists(db, &valid.schema).await?
        && find_by_schema(db, &valid.schema).await?.is_none()
    {
        let err = AppError::conflict(
            "schemaName",
            "a schema with this name exists in the database but belongs to no tenant; it is never reused silently",
        );
        audit_failure(state, actor, "tenant.create", None, &err).await;
        return Err(err);
    }
    let pending_admin = match &valid.admin {
        Some(admin) => Some(PendingAdmin {
            email: admin.email.clone(),
            name: admin.name.clone(),
            password_hash: state.passwords.hash(admin.password.clone()).await?,
        }),
        None => None,
    };
    let key = api_keys::generate(&state.config.api_key_prefix);
    let now = Utc::now().fixed_offset();
    let row = tenants::ActiveModel {
        id: Set(options.tenant_id.unwrap_or_else(Uuid::new_v4)),
        tenant_name: Set(valid.tenant_name),
        domain: Set(valid.domain),
        schema_name: Set(valid.schema.as_str().to_owned()),
        tenant_type: Set(valid.tenant_type),
        email: Set(valid.email),
        phone: Set(valid.phone),
        website: Set(valid.website),
        address: Set(valid.address),
        city: Set(valid.city),
        state: Set(valid.state),
        description: Set(valid.description),
        settings: Set(valid.settings),
        status: Set(if options.provision_schema {
            TenantStatus::Provisioning
        } else {
            TenantStatus::Pending
        }
        .as_db()
        .to_owned()),
        pending_admin: Set(pending_admin.map(|admin| json!(admin))),
        api_key_hash: Set(Some(key.hash)),
        api_key_prefix: Set(Some(key.display_prefix)),
        api_key_created_at: Set(Some(now)),
        ..Default::default()
    };
    let progress = &options.progress;
    progress.report(Step::Register, StepStatus::Started, None);
    let tenant = match tenants::Entity::insert(row).exec_with_returning(db).await {
        Ok(tenant) => {
            progress.report(Step::Register, StepStatus::Succeeded, None);
            progress.report(Step::ApiKey, StepStatus::Succeeded, None);
            tenant
        }
        Err(err) => {
            let err = described_conflict(AppError::from(err));
            progress.report(Step::Register, StepStatus::Failed, Some(&err.to_string()));
            audit_failure(state, actor, "tenant.create", None, &err).await;
            return Err(err);
        }
    };

    if !options.provision_schema {
        audit_success(
            state,
            actor,
            "tenant.create",
            &tenant,
            json!({ "provisioned": false }),
        )
        .await;
        return Ok(Created {
            migrations: SchemaMigrations::pending_all(),
            tenant,
            api_key: key.key,
            schema_created: false,
            message: "tenant registered; its schema is not provisioned yet".into(),
        });
    }

    let task_state = state.clone();
    let task_tenant = tenant.clone();
    let task_options = options.clone();
    let provisioned = tokio::spawn(async move {
        let timeout = task_options.timeout;
        match tokio::time::timeout(timeout, provision(&task_state, &task_tenant, &task_options))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(StepFailure {
                step: Step::Verify,
                detail: format!("provisioning took longer than {} s", timeout.as_secs()),
                // Unknown how far it got: the rollback drops the schema if it is there.
                schema_created: true,
                transient: true,
            }),
        }
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("provisioning task failed: {e}")))?;

    match provisioned {
        Ok((tenant, migrations)) => {
            audit_success(
                state,
                actor,
                "tenant.create",
                &tenant,
                json!({ "provisioned": true }),
            )
            .await;
            let message = if migrations.at_head() {
                "tenant provisioned and active".to_owned()
            } else {
                "schema created; run migrations to finish provisioning".to_owned()
            };
            Ok(Created {
                tenant,
                api_key: key.key,
                schema_created: true,
                migrations,
                message,
            })
        }
        Err(failure) => {
            progress.report(failure.step, StepStatus::Failed, Some(&failure.detail));
            progress.report(Step::Rollback, StepStatus::Started, None);
            let rolled_back = undo_provisioning(state, &tenant, &failure).await;
            progress.report(
                Step::Rollback,
                if rolled_back {
                    StepStatus::Succeeded
                } else {
                    StepStatus::Failed
                },
                None,
            );
            let err = AppError::Failed {
                step: failure.step.name(),
                transient: failure.transient,
                message: format!(
                    "provisioning failed at {}: {}; {}",
                    failure.step.name(),
                    failure.detail,
                    if rolled_back {
                        "everything made for this tenant was removed"
                    } else {
                        "the tenant is marked FAILED and its schema kept for inspection"
                    }
                ),
            };
            audit_failure(state, actor, "tenant.create", Some(tenant.id), &err).await;
            Err(err)
        }
    }
}

/// Creates the schema, migrates it to head, seeds, verifies and activates it, all in one
/// transaction: PostgreSQL's DDL is transactional, so a failure (or a crash) at any step leaves
/// no schema behind, and one commit instead of one per step keeps provisioning near the speed
/// of the DDL itself.
async fn provision(
    state: &SharedState,
    tenant: &tenants::Model,
    options: &ProvisionOptions,
) -> Result<(tenants::Model, SchemaMigrations), StepFailure> {
    let schema = schema_of(tenant);
    let progress = &options.progress;
    let fail = |step: Step, schema_created: bool| {
        move |err: AppError| {
            tracing::warn!(tenant = %tenant.id, step = step.name(), error = ?err, "provisioning step failed");
            StepFailure {
                step,
                transient: err.is_transient(),
                // The outermost description only: it says what failed without SQL detail.
                detail: match &err {
                    AppError::Internal(source) => source.to_string(),
                    other => other.to_string(),
                },
                schema_created,
            }
        }
    };
    progress.report(Step::CreateSchema, StepStatus::Started, None);
    let txn = state
        .db
        .begin()
        .await
        .map_err(|e| fail(Step::CreateSchema, false)(e.into()))?;
    txn.execute_unprepared(&format!("CREATE SCHEMA {}", schema.quoted()))
        .await
        .map_err(|e| fail(Step::CreateSchema, false)(e.into()))?;
    migrator::pin_and_lock(&txn, &schema)
        .await
        .map_err(|e| fail(Step::CreateSchema, false)(e.into()))?;
    progress.report(Step::CreateSchema, StepStatus::Succeeded, None);

    let (tenant, migrations) = if options.run_migrations {
        progress.report(Step::Migrate, StepStatus::Started, None);
        let migrations = migrator::migrate_all_in(&txn)
            .await
            .map_err(|e| fail(Step::Migrate, false)(e.into()))?;
        progress.report(Step::Migrate, StepStatus::Succeeded, None);
        let tenant = record_revision_in(&txn, tenant, &migrations)
            .await
            .map_err(fail(Step::Register, false))?;
        let tenant = activate_in(&txn, &schema, &tenant, progress)
            .await
            .map_err(|(step, e)| fail(step, false)(e))?;
        (tenant, migrations)
    } else {
        let tenant = update_registry_in(&txn, tenant.id, |row| {
            row.schema_provisioned = Set(true);
            row.status = Set(TenantStatus::Pending.as_db().to_owned());
        })
        .await
        .map_err(fail(Step::Register, false))?;
        (tenant, SchemaMigrations::pending_all())
    };
    // Whether a failed commit took effect is unknown: the undo drops the schema if it is there.
    txn.commit()
        .await
        .map_err(|e| fail(Step::Verify, true)(e.into()))?;
    state.directory.forget(tenant.id).await;
    Ok((tenant, migrations))
}

/// Records a migrated schema's revision in the registry; at head, a tenant still being set up
/// is seeded, verified and activated in the same transaction.
async fn finish_when_at_head(
    state: &SharedState,
    tenant: &tenants::Model,
    migrations: &SchemaMigrations,
) -> Result<tenants::Model, (Step, AppError)> {
    let schema = schema_of(tenant);
    let in_txn = async {
        let txn = begin_in_schema(&state.db, &schema)
            .await
            .map_err(|e| (Step::Register, e.into()))?;
        let tenant = record_revision_in(&txn, tenant, migrations)
            .await
            .map_err(|e| (Step::Register, e))?;
        let tenant = if migrations.at_head() {
            activate_in(&txn, &schema, &tenant, &Progress::none()).await?
        } else {
            tenant
        };
        txn.commit().await.map_err(|e| (Step::Register, e.into()))?;
        Ok(tenant)
    };
    let result = in_txn.await;
    state.directory.forget(tenant.id).await;
    result
}

async fn record_revision_in(
    txn: &DatabaseTransaction,
    tenant: &tenants::Model,
    migrations: &SchemaMigrations,
) -> AppResult<tenants::Model> {
    let revision = migrations.current_revision().map(str::to_owned);
    let at_head = migrations.at_head();
    update_registry_in(txn, tenant.id, |row| {
        row.schema_provisioned = Set(true);
        row.current_revision = Set(revision);
        row.migrations_applied = Set(at_head);
    })
    .await
}

/// Seeds, verifies and activates a tenant that is still being set up, inside `txn` (pinned to
/// its schema, migrated to head). Active and deactivated tenants are left as they are.
async fn activate_in(
    txn: &DatabaseTransaction,
    schema: &SchemaName,
    tenant: &tenants::Model,
    progress: &Progress,
) -> Result<tenants::Model, (Step, AppError)> {
    let setting_up = matches!(
        TenantStatus::from_db(&tenant.status),
        Some(TenantStatus::Pending | TenantStatus::Provisioning | TenantStatus::Failed)
    );
    if !setting_up {
        return Ok(tenant.clone());
    }
    progress.report(Step::Seed, StepStatus::Started, None);
    let admin: Option<PendingAdmin> = tenant
        .pending_admin
        .clone()
        .and_then(|value| serde_json::from_value(value).ok());
    seed_schema(txn, &tenant.tenant_name, &tenant.settings, admin.as_ref())
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
    let activated = update_registry_in(txn, tenant.id, |row| {
        row.status = Set(TenantStatus::Active.as_db().to_owned());
        row.pending_admin = Set(None);
        row.failure_reason = Set(None);
    })
    .await
    .map_err(|e| (Step::Verify, e))?;
    progress.report(Step::Verify, StepStatus::Succeeded, None);
    Ok(activated)
}

/// Undoes a failed provisioning: with rollback enabled the schema it made and the registry row go;
/// without, the row is marked `FAILED` with the reason and the schema stays for inspection.
/// Returns whether everything was removed.
async fn undo_provisioning(
    state: &SharedState,
    tenant: &tenants::Model,
    failure: &StepFailure,
) -> bool {
    let db = &state.db;
    let schema = schema_of(tenant);
    if state.config.enable_rollback {
        let dropped = !failure.schema_created
            || db
                .execute_unprepared(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    schema.quoted()
                ))
                .await
                .is_ok();
        let deleted = tenants::Entity::delete_by_id(tenant.id)
            .exec(db)
            .await
            .is_ok();
        if dropped && deleted {
            return true;
        }
        tracing::error!(tenant = %tenant.id, %schema, "rolling back a failed provisioning did not finish");
    }
    let reason = format!("{}: {}", failure.step.name(), failure.detail);
    if let Err(err) = update_registry(state, tenant.id, |row| {
        row.status = Set(TenantStatus::Failed.as_db().to_owned());
        row.failure_reason = Set(Some(reason));
    })
    .await
    {
        tracing::error!(tenant = %tenant.id, error = ?err, "could not mark the tenant FAILED");
    }
    false
}

/// Creates the tenant's schema, or with `force_recreate` drops and recreates it empty.
pub async fn provision_schema(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    force_recreate: bool,
) -> AppResult<(tenants::Model, SchemaMigrations)> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let schema = schema_of(&tenant);
    let task_state = state.clone();
    let task_schema = schema.clone();
    let result = tokio::spawn(async move {
        let txn = task_state.db.begin().await?;
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
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("schema task failed: {e}")))?;
    let created = match result {
        Ok(created) => created,
        Err(err) => {
            audit_failure(
                state,
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
        if recreated && tenant.status != TenantStatus::Inactive.as_db() {
            row.status = Set(TenantStatus::Pending.as_db().to_owned());
        }
    })
    .await?;
    audit_success(
        state,
        actor,
        "tenant.provision_schema",
        &tenant,
        json!({ "created": created, "forceRecreate": force_recreate }),
    )
    .await;
    let migrations = migrator::status(&state.db, &schema).await?;
    Ok((tenant, migrations))
}

/// Migrates the tenant's schema up or down to `target`. A failing migration leaves the schema
/// at the last good revision, and the registry says so.
pub async fn run_migrations(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    target: Target,
    mode: MigrationMode,
) -> AppResult<(tenants::Model, SchemaMigrations)> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let schema = schema_of(&tenant);
    if !migrator::schema_exists(&state.db, &schema).await? {
        return Err(AppError::bad_input(
            "tenantId",
            "the tenant's schema is not provisioned; run provisionSchema first",
        ));
    }
    let task_state = state.clone();
    let result = tokio::spawn(async move {
        match mode {
            MigrationMode::Stepwise => {
                let migrated = migrator::migrate_to(&task_state.db, &schema, &target).await;
                let reached = match &migrated {
                    Ok(reached) => reached.clone(),
                    Err(failure) => failure.reached.clone(),
                };
                let recorded = finish_when_at_head(&task_state, &tenant, &reached).await;
                (migrated, recorded)
            }
            MigrationMode::Whole => migrate_whole(&task_state, &tenant, &schema, &target).await,
        }
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("migration task failed: {e}")))?;
    match result {
        (Ok(reached), Ok(tenant)) => {
            audit_success(
                state,
                actor,
                "tenant.migrate",
                &tenant,
                json!({ "revision": reached.current_revision() }),
            )
            .await;
            Ok((tenant, reached))
        }
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
                message: format!(
                    "migration {failed_migration} failed; the schema stays at revision {}",
                    reached.current_revision().unwrap_or("base")
                ),
            };
            audit_failure(state, actor, "tenant.migrate", Some(tenant_id), &err).await;
            Err(err)
        }
        (Ok(_), Err((step, err))) => {
            audit_failure(state, actor, "tenant.migrate", Some(tenant_id), &err).await;
            Err(AppError::Failed {
                step: step.name(),
                transient: err.is_transient(),
                message: format!("the schema was migrated but {} failed", step.name()),
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

/// [`MigrationMode::Whole`]: the schema's steps, its registry record and (at head, for a tenant
/// being set up) its seed, committed together.
async fn migrate_whole(
    state: &SharedState,
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
    let txn = match state.db.begin().await {
        Ok(txn) => txn,
        Err(err) => return not_started(err),
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
        let tenant = record_revision_in(&txn, tenant, &reached)
            .await
            .map_err(|e| (Step::Register, e))?;
        let tenant = if reached.at_head() {
            activate_in(&txn, schema, &tenant, &Progress::none()).await?
        } else {
            tenant
        };
        txn.commit().await.map_err(|e| (Step::Register, e.into()))?;
        Ok(tenant)
    }
    .await;
    state.directory.forget(tenant.id).await;
    (Ok(reached), recorded)
}

/// Turns a tenant off: its tokens and keys stop working.
pub async fn set_active(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    active: bool,
) -> AppResult<tenants::Model> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let status = match (
        active,
        tenant.migrations_applied && tenant.schema_provisioned,
    ) {
        (false, _) => TenantStatus::Inactive,
        (true, true) => TenantStatus::Active,
        (true, false) => TenantStatus::Pending,
    };
    let tenant = update_registry(state, tenant.id, |row| {
        row.status = Set(status.as_db().to_owned());
    })
    .await?;
    let action = if active {
        "tenant.reactivate"
    } else {
        "tenant.deactivate"
    };
    audit_success(state, actor, action, &tenant, json!({})).await;
    Ok(tenant)
}

/// Deletes a tenant. With `drop_schema` its data goes too; otherwise the schema is kept for a
/// restore and the tenant's domain and schema name stay reserved.
pub async fn delete(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    drop_schema: bool,
) -> AppResult<tenants::Model> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let schema = schema_of(&tenant);
    let task_state = state.clone();
    let task_tenant = tenant.clone();
    let task_tenant_id = tenant.id;
    let result: AppResult<()> = tokio::spawn(async move {
        let txn = task_state.db.begin().await?;
        if drop_schema {
            migrator::lock_schema(&txn, &schema).await?;
            txn.execute_unprepared(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                schema.quoted()
            ))
            .await?;
            tenants::Entity::delete_by_id(task_tenant.id)
                .exec(&txn)
                .await?;
        } else {
            let mut row = task_tenant.into_active_model();
            row.status = Set(TenantStatus::Inactive.as_db().to_owned());
            row.deleted_at = Set(Some(Utc::now().fixed_offset()));
            row.updated_at = Set(Utc::now().fixed_offset());
            row.update(&txn).await?;
        }
        txn.commit().await?;
        task_state.directory.forget(task_tenant_id).await;
        Ok(())
    })
    .await
    .map_err(|e| AppError::internal(anyhow::anyhow!("delete task failed: {e}")))?;
    match result {
        Ok(()) => {
            audit_success(
                state,
                actor,
                "tenant.delete",
                &tenant,
                json!({ "dropSchema": drop_schema }),
            )
            .await;
            Ok(tenant)
        }
        Err(err) => {
            audit_failure(state, actor, "tenant.delete", Some(tenant.id), &err).await;
            Err(err)
        }
    }
}

/// Replaces the tenant's API key; the old one stops working at once.
pub async fn rotate_api_key(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
) -> AppResult<String> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let key = api_keys::generate(&state.config.api_key_prefix);
    let tenant = update_registry(state, tenant.id, |row| {
        row.api_key_hash = Set(Some(key.hash.clone()));
        row.api_key_prefix = Set(Some(key.display_prefix.clone()));
        row.api_key_created_at = Set(Some(Utc::now().fixed_offset()));
    })
    .await?;
    audit_success(
        state,
        actor,
        "tenant.rotate_api_key",
        &tenant,
        json!({ "prefix": key.display_prefix }),
    )
    .await;
    Ok(key.key)
}

/// A tenant of the registry that is not deleted.
pub async fn find_live(db: &impl ConnectionTrait, id: Uuid) -> AppResult<tenants::Model> {
    tenants::Entity::find_by_id(id)
        .filter(tenants::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found("no such tenant"))
}

/// The registry row owning `schema`, deleted or not.
pub async fn find_by_schema(
    db: &impl ConnectionTrait,
    schema: &SchemaName,
) -> AppResult<Option<tenants::Model>> {
    Ok(tenants::Entity::find()
        .filter(tenants::Column::SchemaName.eq(schema.as_str()))
        .one(db)
        .await?)
}

/// Tables a provisioned tenant must have that its schema lacks.
pub async fn missing_tables(
    db: &impl ConnectionTrait,
    schema: &SchemaName,
) -> AppResult<Vec<String>> {
    let present: Vec<String> = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT tablename FROM pg_tables WHERE schemaname = $1",
            [schema.as_str().into()],
        ))
        .await?
        .iter()
        .filter_map(|row| row.try_get::<String>("", "tablename").ok())
        .collect();
    Ok(migration::TENANT_TABLES
        .iter()
        .filter(|table| !present.iter().any(|p| p == *table))
        .map(|table| (*table).to_owned())
        .collect())
}

/// Schemas in the database that no tenant of the registry owns (system schemas aside).
pub async fn orphan_schemas(db: &impl ConnectionTrait) -> AppResult<Vec<String>> {
    Ok(db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT nspname FROM pg_namespace \
             WHERE nspname NOT IN ('public', 'information_schema') \
               AND nspname NOT LIKE 'pg\\_%' \
               AND nspname NOT IN (SELECT schema_name FROM public.tenants) \
             ORDER BY nspname",
        ))
        .await?
        .iter()
        .filter_map(|row| row.try_get::<String>("", "nspname").ok())
        .collect())
}

/// The registry's schema name of a tenant, validated again before it reaches SQL.
pub fn schema_of(tenant: &tenants::Model) -> SchemaName {
    SchemaName::parse(&tenant.schema_name).expect("the registry holds only validated schema names")
}

/// Applies `change` to the tenant's row, bumps `updated_at`, and evicts the tenant from the
/// authentication cache so the change takes effect at once.
async fn update_registry(
    state: &AppState,
    id: Uuid,
    change: impl FnOnce(&mut tenants::ActiveModel),
) -> AppResult<tenants::Model> {
    let updated = registry_change(id, change).update(&state.db).await;
    state.directory.forget(id).await;
    Ok(updated?)
}

/// [`update_registry`] inside a transaction; the caller evicts the tenant from the cache once
/// the transaction is committed.
async fn update_registry_in(
    txn: &DatabaseTransaction,
    id: Uuid,
    change: impl FnOnce(&mut tenants::ActiveModel),
) -> AppResult<tenants::Model> {
    Ok(registry_change(id, change).update(txn).await?)
}

/// The row change `change` describes, with `updated_at` bumped.
fn registry_change(
    id: Uuid,
    change: impl FnOnce(&mut tenants::ActiveModel),
) -> tenants::ActiveModel {
    let mut row = tenants::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id),
        ..Default::default()
    };
    change(&mut row);
    row.updated_at = Set(Utc::now().fixed_offset());
    row
}

/// Names a registry uniqueness conflict in the operator's words.
fn described_conflict(err: AppError) -> AppError {
    match err {
        AppError::Conflict { field, .. } => AppError::Conflict {
            message: format!(
                "a tenant with this {} already exists",
                field.as_deref().unwrap_or("name")
            ),
            field,
        },
        other => other,
    }
}

async fn audit_success(
    state: &SharedState,
    actor: &Actor,
    action: &str,
    tenant: &tenants::Model,
    mut detail: serde_json::Value,
) {
    detail["domain"] = json!(tenant.domain);
    detail["schemaName"] = json!(tenant.schema_name);
    audit::record(
        &state.db,
        actor,
        action,
        Some(tenant.id),
        Outcome::Success,
        detail,
    )
    .await;
}

async fn audit_failure(
    state: &SharedState,
    actor: &Actor,
    action: &str,
    tenant_id: Option<Uuid>,
    err: &AppError,
) {
    let detail = json!({ "code": err.code(), "error": err.to_string() });
    audit::record(
        &state.db,
        actor,
        action,
        tenant_id,
        Outcome::Failure,
        detail,
    )
    .await;
}

/// Changes to a tenant's registry entry; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
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
    pub settings: Option<SettingsDraft>,
}

/// Updates a tenant's registry entry under the same rules as creation. The schema name never
/// changes: it is where the data lives.
pub async fn update(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    patch: TenantPatch,
) -> Result<tenants::Model, Vec<AppError>> {
    let current = find_live(&state.db, tenant_id).await.map_err(|e| vec![e])?;
    let settings = patch
        .settings
        .unwrap_or_default()
        .merged_over(SettingsDraft::from_json(&current.settings));
    let draft = TenantDraft {
        tenant_name: patch
            .tenant_name
            .unwrap_or_else(|| current.tenant_name.clone()),
        domain: patch.domain.unwrap_or_else(|| current.domain.clone()),
        email: patch.email.unwrap_or_else(|| current.email.clone()),
        tenant_type: patch
            .tenant_type
            .or_else(|| Some(current.tenant_type.clone())),
        phone: patch.phone.or_else(|| current.phone.clone()),
        website: patch.website.or_else(|| current.website.clone()),
        address: patch.address.or_else(|| current.address.clone()),
        city: patch.city.or_else(|| current.city.clone()),
        state: patch.state.or_else(|| current.state.clone()),
        schema_name: Some(current.schema_name.clone()),
        description: patch.description.or_else(|| current.description.clone()),
        settings: Some(settings),
        admin: None,
    };
    let valid = validate_new_tenant(&draft, &state.config.tenant_schema_prefix)?;
    let updated = update_registry(state, tenant_id, |row| {
        row.tenant_name = Set(valid.tenant_name);
        row.domain = Set(valid.domain);
        row.email = Set(valid.email);
        row.tenant_type = Set(valid.tenant_type);
        row.phone = Set(valid.phone);
        row.website = Set(valid.website);
        row.address = Set(valid.address);
        row.city = Set(valid.city);
        row.state = Set(valid.state);
        row.description = Set(valid.description);
        row.settings = Set(valid.settings);
    })
    .await;
    match updated {
        Ok(tenant) => {
            audit_success(state, actor, "tenant.update", &tenant, json!({})).await;
            Ok(tenant)
        }
        Err(err) => {
            let err = described_conflict(err);
            audit_failure(state, actor, "tenant.update", Some(tenant_id), &err).await;
            Err(vec![err])
        }
    }
}

/// The tenant, whether its schema exists, and the schema's migration state.
pub async fn migration_status(
    state: &SharedState,
    tenant_id: Uuid,
) -> AppResult<(tenants::Model, bool, SchemaMigrations)> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let schema = schema_of(&tenant);
    let exists = migrator::schema_exists(&state.db, &schema).await?;
    let migrations = migrator::status(&state.db, &schema).await?;
    Ok((tenant, exists, migrations))
}

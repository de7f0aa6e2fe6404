//! Provisioning a new tenant: register it (`PENDING → PROVISIONING`), then create, migrate,
//! seed and verify its schema in one transaction and activate it (`ACTIVE`). Whatever fails on
//! the way is undone (or, with rollback off, the tenant is marked `FAILED`), so no input, race or
//! error leaves a half-made tenant.
//!
//! A creation runs in a task of its own from registration to audit: a client that disconnects
//! or a request that times out mid-way cancels neither the work nor its undo.

use chrono::Utc;
use entity::public::tenants;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, IsolationLevel, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::{self, Actor},
    db::servers::CONTROL_SERVER,
    error::{AppError, AppResult},
    primitives::api_keys,
    state::SharedState,
    tenancy::{
        Progress, Step, StepStatus, TenantStatus,
        clone::{self, CloneSource, HeldSource},
        migrate::{activate_in, record_revision_in},
        migrator::{self, SchemaMigrations, Target},
        registry::{described_conflict, find_by_schema, schema_of, update_registry_in},
        run_detached,
        seed::{PendingAdmin, SeedRole},
        servers,
        validation::ValidTenant,
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
    /// The first administrator with the password already hashed (a batch hashes it when it is
    /// submitted, so that a resumed job needs no password); else `valid.admin` is hashed here.
    pub admin: Option<PendingAdmin>,
    /// Extra roles of the tenant's template, resolved by the caller
    /// ([`super::templates::apply`]); kept with the tenant until its schema is seeded.
    pub roles: Vec<SeedRole>,
    /// The tenant whose revision (and rows) the new schema takes instead of head's
    /// ([`super::clone`]); a clone is always provisioned.
    pub clone_from: Option<CloneSource>,
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
    /// What a client may read ([`AppError::client_message`]).
    detail: String,
    /// The log's reference for an internal cause.
    reference: Option<uuid::Uuid>,
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
    let (state, actor) = (state.clone(), actor.clone());
    run_detached("tenant creation", async move {
        create_to_the_end(&state, &actor, valid, options).await
    })
    .await?
}

#[tracing::instrument(
    name = "provision tenant",
    skip_all,
    fields(tenant_id = tracing::field::Empty, schema = %valid.schema, domain = %valid.domain)
)]
async fn create_to_the_end(
    state: &SharedState,
    actor: &Actor,
    valid: ValidTenant,
    options: ProvisionOptions,
) -> AppResult<Created> {
    // A clone is built in one transaction with a read of its source, which lives on the control
    // database (`clone::check_source`): it goes there too.
    let placed = match (&options.clone_from, valid.server.as_deref()) {
        (Some(_), None | Some(CONTROL_SERVER)) => Ok(None),
        (Some(_), Some(_)) => Err(AppError::bad_input(
            "server",
            "a clone is placed on its source's server, the control database",
        )),
        (None, requested) => servers::place(state, requested, "server").await,
    };
    let server = match placed {
        Ok(server) => server,
        Err(err) => {
            audit::failure(&state.db, actor, "tenant.create", None, &err).await;
            return Err(err);
        }
    };
    let db = &state.db;
    // A schema of that name on the tenant's server that no tenant owns is never reused.
    let schema_db = state.servers.pool(server.as_deref()).await?;
    if migrator::schema_exists(&schema_db, &valid.schema)
        .await
        .map_err(|err| state.servers.failed(server.as_deref(), err))?
        && find_by_schema(db, &valid.schema).await?.is_none()
    {
        let err = AppError::conflict(
            "schemaName",
            "a schema with this name exists in the database but belongs to no tenant; it is never reused silently",
        );
        audit::failure(&state.db, actor, "tenant.create", None, &err).await;
        return Err(err);
    }
    let pending_admin = match (&options.admin, &valid.admin) {
        (Some(hashed), _) => Some(hashed.clone()),
        (None, Some(admin)) => Some(PendingAdmin {
            email: admin.email.clone(),
            name: admin.name.clone(),
            password_hash: state.passwords.hash(admin.password.clone()).await?,
        }),
        (None, None) => None,
    };
    let key = api_keys::generate(&state.config.api_key_prefix);
    let tenant_id = options.tenant_id.unwrap_or_else(Uuid::new_v4);
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant_id));
    let now = Utc::now().fixed_offset();
    let row = tenants::ActiveModel {
        id: Set(tenant_id),
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
        }),
        pending_admin: Set(pending_admin.map(|admin| json!(admin))),
        pending_roles: Set((!options.roles.is_empty()).then(|| json!(options.roles))),
        api_key_hash: Set(Some(key.hash)),
        api_key_prefix: Set(Some(key.display_prefix)),
        api_key_created_at: Set(Some(now)),
        api_key_permissions: Set(json!(valid.api_key_permissions)),
        server_name: Set(server),
        ..Default::default()
    };
    let progress = &options.progress;
    progress.report(Step::Register, StepStatus::Started, None);
    let registered = async {
        if options.provision_schema {
            // One statement: provisioning records (and announces) the creation when it commits.
            return tenants::Entity::insert(row).exec_with_returning(db).await;
        }
        // Created as far as it is asked to be: recorded (and announced) with its row.
        let txn = db.begin().await?;
        let tenant = tenants::Entity::insert(row)
            .exec_with_returning(&txn)
            .await?;
        audit::tenant_success(
            &txn,
            actor,
            "tenant.create",
            &tenant,
            json!({ "provisioned": false }),
        )
        .await;
        txn.commit().await?;
        Ok(tenant)
    };
    let tenant = match registered.await {
        Ok(tenant) => {
            progress.report(Step::Register, StepStatus::Succeeded, None);
            progress.report(Step::ApiKey, StepStatus::Succeeded, None);
            tenant
        }
        Err(err) => {
            let err = described_conflict(AppError::from(err));
            progress.report(
                Step::Register,
                StepStatus::Failed,
                Some(&err.client_message().0),
            );
            audit::failure(&state.db, actor, "tenant.create", None, &err).await;
            return Err(err);
        }
    };

    if !options.provision_schema {
        return Ok(Created {
            migrations: SchemaMigrations::pending_all(),
            tenant,
            api_key: key.key,
            schema_created: false,
            message: "tenant registered; its schema is not provisioned yet".into(),
        });
    }

    let task_state = state.clone();
    let task_actor = actor.clone();
    let task_tenant = tenant.clone();
    let task_options = options.clone();
    let provisioned = run_detached("provisioning", async move {
        let timeout = task_options.timeout;
        let provisioning = provision(&task_state, &task_actor, &task_tenant, &task_options);
        match tokio::time::timeout(timeout, provisioning).await {
            Ok(result) => result,
            Err(_) => Err(StepFailure {
                step: Step::Verify,
                detail: format!("provisioning took longer than {} s", timeout.as_secs()),
                reference: None,
                // Unknown how far it got: the rollback drops the schema if it is there.
                schema_created: true,
                transient: true,
            }),
        }
    })
    .await?;

    match provisioned {
        Ok((tenant, migrations)) => {
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
            let (rolled_back, err) = undo_provisioning(state, actor, &tenant, &failure).await;
            progress.report(
                Step::Rollback,
                if rolled_back {
                    StepStatus::Succeeded
                } else {
                    StepStatus::Failed
                },
                None,
            );
            Err(err)
        }
    }
}

/// The error a failed provisioning reports, saying whether its tenant was removed.
fn provisioning_failed(failure: &StepFailure, rolled_back: bool) -> AppError {
    AppError::Failed {
        step: failure.step.name(),
        transient: failure.transient,
        reference: failure.reference,
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
    }
}

/// Creates the schema, migrates it to head, seeds, verifies and activates it, all in one
/// transaction: PostgreSQL's DDL is transactional, so a failure (or a crash) at any step leaves
/// no schema behind, and one commit instead of one per step keeps provisioning near the speed
/// of the DDL itself.
async fn provision(
    state: &SharedState,
    actor: &Actor,
    tenant: &tenants::Model,
    options: &ProvisionOptions,
) -> Result<(tenants::Model, SchemaMigrations), StepFailure> {
    let schema = schema_of(tenant);
    let progress = &options.progress;
    let fail = |step: Step, schema_created: bool| {
        move |err: AppError| {
            tracing::warn!(tenant = %tenant.id, step = step.name(), error = ?err, "provisioning step failed");
            let (detail, reference) = err.client_message();
            StepFailure {
                step,
                transient: err.is_transient(),
                detail,
                reference,
                schema_created,
            }
        }
    };
    // A clone's source is held before its transaction begins (see `HeldSource::hold`).
    let source = match &options.clone_from {
        Some(from) => Some(
            HeldSource::hold(state, from)
                .await
                .map_err(fail(Step::Validate, false))?,
        ),
        None => None,
    };
    progress.report(Step::CreateSchema, StepStatus::Started, None);
    // One snapshot of every source table for a copy of its rows.
    let isolation = source
        .as_ref()
        .is_some_and(HeldSource::include_data)
        .then_some(IsolationLevel::RepeatableRead);
    // The schema's server; the registry's changes go with the schema's transaction when that
    // is the control database, else into a transaction there committed right after it.
    let server = tenant.server_name.as_deref();
    let schema_db = state
        .servers
        .pool(server)
        .await
        .map_err(fail(Step::CreateSchema, false))?;
    let txn = schema_db
        .begin_with_config(isolation, None)
        .await
        .map_err(|e| fail(Step::CreateSchema, false)(state.servers.failed(server, e)))?;
    let elsewhere = match server {
        Some(_) => Some(
            state
                .db
                .begin()
                .await
                .map_err(|e| fail(Step::CreateSchema, false)(e.into()))?,
        ),
        None => None,
    };
    let registry = elsewhere.as_ref().unwrap_or(&txn);
    txn.execute_unprepared(&format!("CREATE SCHEMA {}", schema.quoted()))
        .await
        .map_err(|e| fail(Step::CreateSchema, false)(e.into()))?;
    migrator::pin_and_lock(&txn, &schema)
        .await
        .map_err(|e| fail(Step::CreateSchema, false)(e.into()))?;
    progress.report(Step::CreateSchema, StepStatus::Succeeded, None);

    let migrations = if let Some(source) = &source {
        progress.report(Step::Migrate, StepStatus::Started, None);
        let migrations = clone::build(&txn, source, &schema, tenant)
            .await
            .map_err(|(step, e)| fail(step, false)(e))?;
        progress.report(Step::Migrate, StepStatus::Succeeded, None);
        Some(migrations)
    } else if options.run_migrations {
        progress.report(Step::Migrate, StepStatus::Started, None);
        let migrations = migrator::migrate_new_in(&txn, &Target::Head)
            .await
            .map_err(|e| fail(Step::Migrate, false)(e.into()))?;
        progress.report(Step::Migrate, StepStatus::Succeeded, None);
        Some(migrations)
    } else {
        None
    };
    let tenant = match &migrations {
        Some(migrations) => record_revision_in(registry, tenant, migrations)
            .await
            .map_err(fail(Step::Register, false))?,
        None => tenant.clone(),
    };
    let tenant = match &migrations {
        Some(migrations) if migrations.at_head() => {
            activate_in(&txn, registry, &schema, &tenant, progress)
                .await
                .map_err(|(step, e)| fail(step, false)(e))?
        }
        // Below head (not migrated, or cloned from a source below head): set up once a
        // migration takes it to head.
        _ => update_registry_in(registry, tenant.id, |row| {
            row.schema_provisioned = Set(true);
            row.status = Set(TenantStatus::Pending);
        })
        .await
        .map_err(fail(Step::Register, false))?,
    };
    let migrations = migrations.unwrap_or_else(SchemaMigrations::pending_all);
    let mut detail = json!({ "provisioned": true });
    if let Some(source) = &source {
        detail["clonedFrom"] = json!(source.tenant_id());
        detail["includeData"] = json!(source.include_data());
        detail["revision"] = json!(source.revision());
    }
    // Recorded with what it records: a crash never leaves a tenant without its audit row, and
    // running the job again never adds a second one.
    audit::tenant_success(registry, actor, "tenant.create", &tenant, detail).await;
    // Whether a failed commit took effect is unknown: the undo drops the schema if it is there.
    // On another server, what the tenant's pins there check is written with its schema.
    servers::commit_placed(txn, elsewhere, &tenant)
        .await
        .map_err(fail(Step::Verify, true))?;
    state.directory.forget(tenant.id).await;
    Ok((tenant, migrations))
}

/// Undoes a failed provisioning: with rollback enabled the schema it made and the registry row go;
/// without, the row is marked `FAILED` with the reason and the schema stays for inspection.
/// The failure is audited (and announced) in the transaction of the undo. Returns whether
/// everything was removed, and the error to report.
async fn undo_provisioning(
    state: &SharedState,
    actor: &Actor,
    tenant: &tenants::Model,
    failure: &StepFailure,
) -> (bool, AppError) {
    let db = &state.db;
    let schema = schema_of(tenant);
    if state.config.enable_rollback {
        let err = provisioning_failed(failure, true);
        let removed = async {
            if failure.schema_created && tenant.server_name.is_some() {
                servers::drop_placed_schema(state, tenant).await?;
            }
            let txn = db.begin().await?;
            if failure.schema_created && tenant.server_name.is_none() {
                txn.execute_unprepared(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    schema.quoted()
                ))
                .await?;
            }
            tenants::Entity::delete_by_id(tenant.id).exec(&txn).await?;
            audit::failure(&txn, actor, "tenant.create", Some(tenant.id), &err).await;
            txn.commit().await?;
            AppResult::Ok(())
        }
        .await;
        match removed {
            Ok(()) => {
                state.directory.forget(tenant.id).await;
                return (true, err);
            }
            Err(cause) => {
                tracing::error!(tenant = %tenant.id, %schema, error = %cause, "rolling back a failed provisioning did not finish");
            }
        }
    }
    let err = provisioning_failed(failure, false);
    let reason = format!("{}: {}", failure.step.name(), failure.detail);
    let marked = async {
        let txn = db.begin().await?;
        update_registry_in(&txn, tenant.id, |row| {
            row.status = Set(TenantStatus::Failed);
            row.failure_reason = Set(Some(reason));
        })
        .await?;
        audit::failure(&txn, actor, "tenant.create", Some(tenant.id), &err).await;
        txn.commit().await?;
        AppResult::Ok(())
    }
    .await;
    state.directory.forget(tenant.id).await;
    if let Err(cause) = marked {
        tracing::error!(tenant = %tenant.id, error = ?cause, "could not mark the tenant FAILED");
        audit::failure(db, actor, "tenant.create", Some(tenant.id), &err).await;
    }
    (false, err)
}

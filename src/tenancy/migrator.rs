//! Per-schema migrations: every tenant schema keeps its own `seaql_migrations` ledger and can sit
//! at its own revision.
//!
//! Each step (one migration up or down) is its own transaction that holds an advisory lock keyed
//! by the schema and runs with a `lock_timeout`, so concurrent runs on one schema queue instead of
//! colliding, a step never waits forever behind a busy table, and a failing step leaves the schema
//! at the last good revision.

use migration::{
    TenantMigrator, sea_orm_migration::MigrationStatus, sea_orm_migration::MigratorTrait,
    tenant_migration_names,
};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait,
};

use crate::{
    db::pinned::begin_in_schema,
    error::{AppError, AppResult},
    primitives::{
        locks::{self, Take},
        schema_name::SchemaName,
    },
    tenancy::rendered,
};

/// How long a migration step waits for a table lock before giving up.
pub(super) const LOCK_TIMEOUT: &str = "5s";

/// Where to take a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Head,
    /// No migration applied.
    Base,
    /// Up or down until this migration is the last one applied.
    Revision(String),
}

impl Target {
    /// Reads `head`, `base` or a migration name; an unknown name is a `BAD_USER_INPUT` on `field`.
    pub fn parse(field: &str, value: &str) -> AppResult<Self> {
        match value {
            "head" => Ok(Target::Head),
            "base" => Ok(Target::Base),
            name if tenant_migration_names().iter().any(|known| known == name) => {
                Ok(Target::Revision(name.to_owned()))
            }
            other => Err(AppError::bad_input(
                field,
                format!(
                    "unknown revision {other:?}: expected head, base or one of {}",
                    tenant_migration_names().join(", ")
                ),
            )),
        }
    }

    /// Whether fewer migrations than all are applied at this target.
    pub fn is_below_head(&self) -> bool {
        self.applied_count() < tenant_migration_names().len()
    }

    /// How many migrations are applied at this target.
    pub fn applied_count(&self) -> usize {
        let names = tenant_migration_names();
        match self {
            Target::Head => names.len(),
            Target::Base => 0,
            Target::Revision(name) => names.iter().position(|n| n == name).map_or(0, |i| i + 1),
        }
    }
}

/// The migration state of one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaMigrations {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
}

impl SchemaMigrations {
    /// The last applied migration; `None` at base.
    pub fn current_revision(&self) -> Option<&str> {
        self.applied.last().map(String::as_str)
    }

    pub fn at_head(&self) -> bool {
        self.pending.is_empty()
    }

    /// A schema with nothing applied (or no schema at all).
    pub fn pending_all() -> Self {
        Self::first_applied(0)
    }

    /// A schema with the first `count` migrations applied.
    pub fn first_applied(count: usize) -> Self {
        let mut applied = tenant_migration_names();
        let pending = applied.split_off(count.min(applied.len()));
        SchemaMigrations { applied, pending }
    }
}

/// A migration run that stopped on a failing step; the schema is at `reached`.
#[derive(Debug, thiserror::Error)]
#[error("migration {failed_migration:?} failed: {source}")]
pub struct MigrationFailure {
    pub failed_migration: String,
    pub reached: SchemaMigrations,
    #[source]
    pub source: DbErr,
}

pub async fn schema_exists(db: &impl ConnectionTrait, schema: &SchemaName) -> Result<bool, DbErr> {
    Ok(db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            [schema.as_str().into()],
        ))
        .await?
        .is_some())
}

/// Reads the schema's ledger without creating anything; a missing schema has nothing applied.
pub async fn status(
    db: &(impl TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait),
    schema: &SchemaName,
) -> Result<SchemaMigrations, DbErr> {
    if !schema_exists(db, schema).await? {
        return Ok(SchemaMigrations::pending_all());
    }
    let txn = begin_in_schema(db, schema).await?;
    let migrations = TenantMigrator::get_migration_with_status_read_only(&txn).await?;
    txn.commit().await?;
    Ok(split_by_status(&migrations))
}

/// Opens a transaction pinned to `schema` (which must exist) holding its migration lock, and
/// reads the ledger in it: what is read or dumped before the transaction ends sees the schema
/// at exactly that revision, never a migration step half done.
pub async fn begin_locked(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    schema: &SchemaName,
) -> Result<(DatabaseTransaction, SchemaMigrations), DbErr> {
    let txn = begin_in_schema(db, schema).await?;
    lock_schema(&txn, schema).await?;
    let migrations = TenantMigrator::get_migration_with_status_read_only(&txn).await?;
    Ok((txn, split_by_status(&migrations)))
}

/// Applied migrations with the time each was applied (Unix seconds), oldest first.
pub async fn history(
    db: &(impl TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait),
    schema: &SchemaName,
) -> Result<Vec<(String, i64)>, DbErr> {
    if !schema_exists(db, schema).await? {
        return Ok(Vec::new());
    }
    let txn = begin_in_schema(db, schema).await?;
    let has_ledger = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'seaql_migrations'",
            [schema.as_str().into()],
        ))
        .await?
        .is_some();
    let mut rows = Vec::new();
    if has_ledger {
        for row in txn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT version, applied_at FROM seaql_migrations ORDER BY version",
            ))
            .await?
        {
            rows.push((row.try_get("", "version")?, row.try_get("", "applied_at")?));
        }
    }
    txn.commit().await?;
    Ok(rows)
}

/// Migrates `schema` (which must exist) up or down to `target`, one locked step at a time.
pub async fn migrate_to(
    db: &(impl TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait),
    schema: &SchemaName,
    target: &Target,
) -> Result<SchemaMigrations, MigrationFailure> {
    let wanted = target.applied_count();
    loop {
        let (txn, before) = match begin_step(db, schema).await {
            Ok(step) => step,
            Err(source) => {
                return Err(MigrationFailure {
                    failed_migration: String::new(),
                    reached: status(db, schema)
                        .await
                        .unwrap_or_else(|_| SchemaMigrations::pending_all()),
                    source,
                });
            }
        };
        let applied = before.applied.len();
        if applied == wanted {
            let _ = txn.commit().await;
            return Ok(before);
        }
        let (step, migration) = if applied < wanted {
            (
                TenantMigrator::up(&txn, Some(1)).await,
                before.pending[0].clone(),
            )
        } else {
            (
                TenantMigrator::down(&txn, Some(1)).await,
                before.applied[applied - 1].clone(),
            )
        };
        if let Err(source) = step {
            let _ = txn.rollback().await;
            return Err(MigrationFailure {
                failed_migration: migration,
                reached: before,
                source,
            });
        }
        if let Err(source) = txn.commit().await {
            return Err(MigrationFailure {
                failed_migration: migration,
                reached: before,
                source,
            });
        }
    }
}

/// Opens the transaction of one step: pinned to the schema, lock-timed, holding the schema's
/// migration lock, with the ledger read under that lock.
async fn begin_step(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    schema: &SchemaName,
) -> Result<(DatabaseTransaction, SchemaMigrations), DbErr> {
    let txn = begin_in_schema(db, schema).await?;
    lock_schema(&txn, schema).await?;
    let migrations = TenantMigrator::get_migration_with_status(&txn).await?;
    Ok((txn, split_by_status(&migrations)))
}

/// Takes the schema's migration lock for the rest of the transaction, and bounds how long its DDL
/// waits for table locks. Everything that changes a schema's structure takes this lock.
pub async fn lock_schema(txn: &DatabaseTransaction, schema: &SchemaName) -> Result<(), DbErr> {
    take_schema_lock(txn, schema, false).await
}

/// Takes the schema's migration lock if nobody holds it; false when someone works on it.
pub async fn try_lock_schema(
    txn: &DatabaseTransaction,
    schema: &SchemaName,
) -> Result<bool, DbErr> {
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT {} AS taken", locks::take(Take::TryTransaction, 1)),
            [locks::schema_key(schema).into()],
        ))
        .await?;
    Ok(row.is_some_and(|row| row.try_get::<bool>("", "taken").unwrap_or(false)))
}

/// Pins `txn` to `schema` and takes the schema's migration lock (see [`lock_schema`]).
pub async fn pin_and_lock(txn: &DatabaseTransaction, schema: &SchemaName) -> Result<(), DbErr> {
    take_schema_lock(txn, schema, true).await
}

/// The lock of [`lock_schema`] with its lock timeout, and with `pin` the search path too, in one
/// round trip.
async fn take_schema_lock(
    txn: &DatabaseTransaction,
    schema: &SchemaName,
    pin: bool,
) -> Result<(), DbErr> {
    let search_path = if pin {
        "set_config('search_path', $3, true), "
    } else {
        ""
    };
    let sql = format!(
        "SELECT {search_path}set_config('lock_timeout', $1, true), {}",
        locks::take(Take::Transaction, 2)
    );
    let mut values = vec![LOCK_TIMEOUT.into(), locks::schema_key(schema).into()];
    if pin {
        values.push(schema.quoted().into());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// Takes the schema in `txn` (prepared by [`pin_and_lock`]) to `target` in that one transaction:
/// all steps or none, so a failure leaves the schema where it started.
pub async fn migrate_whole_in(
    txn: &DatabaseTransaction,
    target: &Target,
) -> Result<SchemaMigrations, MigrationFailure> {
    let before = split_by_status(
        &TenantMigrator::get_migration_with_status(txn)
            .await
            .map_err(|source| MigrationFailure {
                failed_migration: String::new(),
                reached: SchemaMigrations::pending_all(),
                source,
            })?,
    );
    let (applied, wanted) = (before.applied.len(), target.applied_count());
    let moved = if applied < wanted {
        TenantMigrator::up(txn, Some((wanted - applied) as u32)).await
    } else if applied > wanted {
        TenantMigrator::down(txn, Some((applied - wanted) as u32)).await
    } else {
        Ok(())
    };
    match moved {
        Ok(()) => Ok(SchemaMigrations::first_applied(wanted)),
        Err(source) => Err(MigrationFailure {
            failed_migration: format!("towards {target:?}"),
            reached: before,
            source,
        }),
    }
}

/// Takes the schema just created in `txn` (prepared by [`pin_and_lock`]) from nothing to
/// `target` in that one transaction, all steps or none: the ledger, the pre-rendered steps and
/// their ledger rows in one round trip ([`rendered::from_base`]), or through the migrator
/// ([`migrate_whole_in`]) when one of them cannot be rendered.
pub async fn migrate_new_in(
    txn: &DatabaseTransaction,
    target: &Target,
) -> Result<SchemaMigrations, MigrationFailure> {
    let wanted = target.applied_count();
    let Some(sql) = rendered::from_base(wanted).await else {
        return migrate_whole_in(txn, target).await;
    };
    match txn.execute_unprepared(&sql).await {
        Ok(_) => Ok(SchemaMigrations::first_applied(wanted)),
        Err(source) => Err(MigrationFailure {
            failed_migration: format!("towards {target:?}"),
            reached: SchemaMigrations::pending_all(),
            source,
        }),
    }
}

fn split_by_status(migrations: &[migration::sea_orm_migration::Migration]) -> SchemaMigrations {
    let (applied, pending): (Vec<_>, Vec<_>) = migrations
        .iter()
        .partition(|m| m.status() == MigrationStatus::Applied);
    SchemaMigrations {
        applied: applied.iter().map(|m| m.name().to_owned()).collect(),
        pending: pending.iter().map(|m| m.name().to_owned()).collect(),
    }
}

impl From<MigrationFailure> for AppError {
    fn from(failure: MigrationFailure) -> Self {
        let revision = failure
            .reached
            .current_revision()
            .unwrap_or("base")
            .to_owned();
        AppError::Internal(anyhow::Error::new(failure.source).context(format!(
            "migration {} failed; the schema stays at revision {revision}",
            failure.failed_migration
        )))
    }
}

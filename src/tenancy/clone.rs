//! Cloning a tenant: a new tenant, made by [`super::provision::create`] like any other (its own
//! id, domain, schema, API key, template and settings, registered, audited and undone on
//! failure), whose schema is migrated to the source's revision instead of head and, when asked,
//! filled with a copy of the source's rows.
//!
//! - The source is held still for the whole clone: its migration lock is taken in a
//!   transaction of its own *before* the clone's transaction begins and released after it ends,
//!   so the revision read under the lock and the snapshot the rows are copied from agree, and
//!   nobody migrates or drops the source meanwhile. Its data stays writable: requests go on.
//! - The rows are copied inside the clone's own `REPEATABLE READ` transaction (one snapshot of
//!   every source table), each table after the tables it references, ids kept; every sequence
//!   then continues after the source's.
//! - Sessions live in `public.sessions`, bound to the tenant's id: a clone starts with none, and
//!   no token or refresh token of the source names it.

use std::collections::{BTreeMap, BTreeSet};

use entity::public::tenants;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement};

use crate::{
    audit::Actor,
    error::{AppError, AppResult},
    primitives::schema_name::{SchemaName, is_valid_identifier},
    state::SharedState,
    tenancy::{
        Step, TenantStatus,
        migrator::{self, SchemaMigrations, Target},
        provision::{self, Created, ProvisionOptions},
        registry::{find_live, schema_of},
        seed,
        validation::ValidTenant,
    },
};

/// The migrator's ledger: the clone gets its own by being migrated, not by a copy.
const LEDGER: &str = "seaql_migrations";

/// What a new tenant is cloned from.
#[derive(Debug, Clone)]
pub struct CloneSource {
    pub tenant_id: uuid::Uuid,
    /// Copy the source's rows too, not only its structure.
    pub include_data: bool,
}

/// Makes `valid` as a clone of the tenant `from` names: checked first (see [`check_source`]),
/// then created the way every tenant is, with `options` (template roles, time limit).
pub async fn clone_tenant(
    state: &SharedState,
    actor: &Actor,
    from: CloneSource,
    valid: ValidTenant,
    options: ProvisionOptions,
) -> AppResult<Created> {
    let admin_email = valid.admin.as_ref().map(|admin| admin.email.as_str());
    check_source(&state.db, from.tenant_id, from.include_data, admin_email).await?;
    let options = ProvisionOptions {
        clone_from: Some(from),
        ..options
    };
    provision::create(state, actor, valid, options).await
}

/// The source must be a live, provisioned, `ACTIVE` tenant (`NOT_FOUND` when there is none,
/// `BAD_USER_INPUT` on `sourceTenantId` otherwise); with its data, the new first admin's email
/// must not be one of its users' (`CONFLICT` on `admin.email`).
pub async fn check_source(
    db: &impl ConnectionTrait,
    source_id: uuid::Uuid,
    include_data: bool,
    admin_email: Option<&str>,
) -> AppResult<tenants::Model> {
    let source = find_live(db, source_id).await?;
    refuse_unclonable(&source).map_err(|message| AppError::bad_input("sourceTenantId", message))?;
    if let (true, Some(email)) = (include_data, admin_email)
        && has_user(db, &schema_of(&source), email).await?
    {
        return Err(admin_taken());
    }
    Ok(source)
}

/// Why `source` cannot be cloned now, if it cannot.
fn refuse_unclonable(source: &tenants::Model) -> Result<(), String> {
    if !source.schema_provisioned {
        return Err("the source tenant's schema is not provisioned".into());
    }
    if source.status != TenantStatus::Active {
        return Err(format!(
            "only an ACTIVE tenant can be cloned; the source is {}",
            source.status.as_db()
        ));
    }
    // A clone is built with one read of its source, in one transaction on the control database.
    if source.server_name.is_some() {
        return Err(
            "only a tenant on the control database can be cloned; the source lives on another database server"
                .into(),
        );
    }
    Ok(())
}

fn admin_taken() -> AppError {
    AppError::Conflict {
        field: Some("admin.email".into()),
        message: "a user with this email comes with the source tenant's data; log in as that user or choose another email".into(),
    }
}

async fn has_user(db: &impl ConnectionTrait, schema: &SchemaName, email: &str) -> AppResult<bool> {
    Ok(db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT 1 FROM {}.users WHERE email = $1", schema.quoted()),
            [email.into()],
        ))
        .await?
        .is_some())
}

/// The source held still for a clone: the transaction holding its migration lock (released when
/// this is dropped) and the ledger read under it.
pub(super) struct HeldSource {
    _lock: DatabaseTransaction,
    tenant: tenants::Model,
    schema: SchemaName,
    migrations: SchemaMigrations,
    include_data: bool,
}

impl HeldSource {
    /// Takes the source's migration lock in a transaction of its own and checks, under it, that
    /// the source may still be cloned. Call it before the clone's transaction begins: that
    /// transaction's snapshot then sees the source at exactly the revision read here.
    pub(super) async fn hold(state: &SharedState, from: &CloneSource) -> AppResult<HeldSource> {
        let tenant = find_live(&state.db, from.tenant_id)
            .await
            .map_err(|_| gone())?;
        let schema = schema_of(&tenant);
        let (lock, migrations) = migrator::begin_locked(&state.db, &schema).await?;
        let tenant = find_live(&lock, from.tenant_id).await.map_err(|_| gone())?;
        refuse_unclonable(&tenant).map_err(|message| AppError::Failed {
            step: Step::Validate.name(),
            message,
            transient: false,
            reference: None,
        })?;
        Ok(HeldSource {
            _lock: lock,
            tenant,
            schema,
            migrations,
            include_data: from.include_data,
        })
    }

    pub(super) fn include_data(&self) -> bool {
        self.include_data
    }

    pub(super) fn tenant_id(&self) -> uuid::Uuid {
        self.tenant.id
    }

    /// The revision the clone is migrated to: the source's.
    fn target(&self) -> Target {
        match self.migrations.current_revision() {
            Some(revision) => Target::Revision(revision.to_owned()),
            None => Target::Base,
        }
    }

    pub(super) fn revision(&self) -> Option<&str> {
        self.migrations.current_revision()
    }
}

fn gone() -> AppError {
    AppError::Failed {
        step: Step::Validate.name(),
        message: "the source tenant was deleted".into(),
        transient: false,
        reference: None,
    }
}

/// Builds the clone in `txn` (its schema created, pinned and locked by the caller): migrated to
/// the source's revision and, with the data, holding a copy of every source row. `new_tenant`
/// names the clone's display name and settings, and its first admin.
pub(super) async fn build(
    txn: &DatabaseTransaction,
    source: &HeldSource,
    schema: &SchemaName,
    new_tenant: &tenants::Model,
) -> Result<SchemaMigrations, (Step, AppError)> {
    let migrations = migrator::migrate_new_in(txn, &source.target())
        .await
        .map_err(|failure| (Step::Migrate, failure.into()))?;
    if source.include_data {
        copy_rows(txn, &source.schema, schema)
            .await
            .map_err(|e| (Step::Seed, e))?;
        seed::replace_settings(txn, &new_tenant.tenant_name, &new_tenant.settings)
            .await
            .map_err(|e| (Step::Seed, e.into()))?;
        let admin_email = new_tenant
            .pending_admin
            .as_ref()
            .and_then(|admin| admin.get("email"))
            .and_then(|email| email.as_str());
        if let Some(email) = admin_email
            && has_user(txn, schema, email)
                .await
                .map_err(|e| (Step::Seed, e))?
        {
            return Err((Step::Seed, admin_taken()));
        }
    }
    Ok(migrations)
}

/// One table of a schema: its columns (generated ones aside) and the tables it references.
#[derive(Debug, Default)]
struct Table {
    columns: Vec<String>,
    references: BTreeSet<String>,
}

/// Copies every row of `from` into `to` (both at the same revision; `to` freshly migrated, its
/// migration-seeded rows replaced), ids and all, then moves every sequence of `to` past the
/// source's.
async fn copy_rows(txn: &DatabaseTransaction, from: &SchemaName, to: &SchemaName) -> AppResult<()> {
    let tables = read_tables(txn, to).await?;
    let source_tables = read_tables(txn, from).await?;
    for (name, table) in &tables {
        let found = source_tables.get(name).map(|t| &t.columns);
        if found != Some(&table.columns) {
            return Err(AppError::Failed {
                step: Step::Seed.name(),
                message: format!(
                    "the source's table {name} does not have the columns of its revision \
                     (tenantDrift lists the differences); nothing was copied"
                ),
                transient: false,
                reference: None,
            });
        }
    }
    if tables.is_empty() {
        return Ok(());
    }
    let quoted = |schema: &SchemaName, table: &str| format!("{}.\"{table}\"", schema.quoted());
    let all: Vec<String> = tables.keys().map(|name| quoted(to, name)).collect();
    txn.execute_unprepared(&format!("TRUNCATE {}", all.join(", ")))
        .await?;
    for name in dependency_order(&tables)? {
        let columns = tables[&name]
            .columns
            .iter()
            .map(|column| format!("\"{column}\""))
            .collect::<Vec<_>>()
            .join(", ");
        txn.execute_unprepared(&format!(
            "INSERT INTO {} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM {}",
            quoted(to, &name),
            quoted(from, &name)
        ))
        .await?;
    }
    continue_sequences(txn, from, to).await
}

/// The tables of `schema` (the ledger and partitions aside), with their columns in order.
/// Names must be plain identifiers, as every migration makes them, before they reach SQL.
async fn read_tables(
    txn: &DatabaseTransaction,
    schema: &SchemaName,
) -> AppResult<BTreeMap<String, Table>> {
    let rows = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT c.relname::text AS tbl, a.attname::text AS col, \
                    ARRAY(SELECT DISTINCT r.relname::text FROM pg_catalog.pg_constraint k \
                            JOIN pg_catalog.pg_class r ON r.oid = k.confrelid \
                           WHERE k.conrelid = c.oid AND k.contype = 'f' \
                             AND r.relnamespace = c.relnamespace AND r.oid <> c.oid) AS refs \
               FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
                AND c.relname <> $2 AND a.attnum > 0 AND NOT a.attisdropped \
                AND a.attgenerated = '' \
              ORDER BY c.relname, a.attnum",
            [schema.as_str().into(), LEDGER.into()],
        ))
        .await?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for row in rows {
        let name: String = row.try_get("", "tbl")?;
        let column: String = row.try_get("", "col")?;
        let references: Vec<String> = row.try_get("", "refs")?;
        if ![&name, &column]
            .into_iter()
            .chain(&references)
            .all(|n| is_valid_identifier(n))
        {
            return Err(AppError::internal(anyhow::anyhow!(
                "schema {schema} has a table or column name that is not a plain identifier: {name}.{column}"
            )));
        }
        let table = tables.entry(name).or_default();
        table.columns.push(column);
        table.references.extend(references);
    }
    Ok(tables)
}

/// Every table after the tables it references, so that each insert meets its foreign keys
/// (a table referencing itself is one statement, checked at its end).
fn dependency_order(tables: &BTreeMap<String, Table>) -> AppResult<Vec<String>> {
    let mut done: Vec<String> = Vec::with_capacity(tables.len());
    while done.len() < tables.len() {
        let ready: Vec<String> = tables
            .iter()
            .filter(|(name, table)| {
                !done.contains(name)
                    && table
                        .references
                        .iter()
                        .all(|r| done.contains(r) || !tables.contains_key(r))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            return Err(AppError::internal(anyhow::anyhow!(
                "the tenant tables reference each other in a cycle; no copy order exists"
            )));
        }
        done.extend(ready);
    }
    Ok(done)
}

/// Moves each sequence owned by a column of `to` (serial and identity columns) past both the
/// source's sequence and the largest value copied, so new rows never collide with copied ones.
async fn continue_sequences(
    txn: &DatabaseTransaction,
    from: &SchemaName,
    to: &SchemaName,
) -> AppResult<()> {
    let owned = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT c.relname::text AS tbl, a.attname::text AS col \
               FROM pg_catalog.pg_depend d \
               JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
               JOIN pg_catalog.pg_class c ON c.oid = d.refobjid \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid \
              WHERE n.nspname = $1 AND d.classid = 'pg_catalog.pg_class'::regclass \
                AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i') \
                AND c.relname <> $2",
            [to.as_str().into(), LEDGER.into()],
        ))
        .await?;
    for row in owned {
        let table: String = row.try_get("", "tbl")?;
        let column: String = row.try_get("", "col")?;
        if !is_valid_identifier(&table) || !is_valid_identifier(&column) {
            continue;
        }
        let in_schema = |schema: &SchemaName| format!("{}.\"{table}\"", schema.quoted());
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT pg_catalog.setval(pg_catalog.pg_get_serial_sequence($1, $2), next.value) \
                   FROM (SELECT GREATEST( \
                           pg_catalog.pg_sequence_last_value(pg_catalog.pg_get_serial_sequence($3, $2)::regclass), \
                           (SELECT max(\"{column}\") FROM {})) AS value) next \
                  WHERE next.value IS NOT NULL",
                in_schema(to)
            ),
            [
                in_schema(to).into(),
                column.clone().into(),
                in_schema(from).into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

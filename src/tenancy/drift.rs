//! Schema drift: a tenant's catalog compared with the structure its revision should have.
//!
//! The structure a revision should have is read from a scratch schema migrated to that revision
//! inside a transaction that is rolled back, so nothing of it is ever visible to anyone else.
//! Migrations are compiled into the binary, so a revision's structure cannot change while the
//! process runs: each revision's reference is built once per process and kept.
//!
//! Both catalogs are read with `pg_catalog` alone on the search path, so PostgreSQL qualifies
//! every name with its schema; the schema's own name is then cut out of each definition, which
//! makes the two comparable.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, LazyLock, Mutex},
};

use entity::public::tenants;
use futures_util::{StreamExt, TryStreamExt, stream};
use migration::tenant_migration_names;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::{
    error::AppResult,
    primitives::schema_name::SchemaName,
    state::AppState,
    tenancy::{
        migrator::{self, Target},
        registry::{self, schema_of},
        servers,
    },
};

/// The migrator's own ledger: bookkeeping, not structure (its revision is checked by health).
const LEDGER: &str = "seaql_migrations";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    Table,
    Column,
    Index,
    Constraint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKind {
    /// The revision has it; the schema does not.
    Missing,
    /// The schema has it; the revision does not.
    Unexpected,
    /// Both have it, defined differently.
    Changed,
}

/// One way a schema differs from its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub kind: DriftKind,
    pub object_type: ObjectType,
    /// `table`, `table.column`, the index's name, or `table.constraint`.
    pub name: String,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct TenantDrift {
    pub tenant_id: Uuid,
    pub schema_name: String,
    /// The revision the schema's ledger records (what it was compared with); `None` at base.
    pub revision: Option<String>,
    pub differences: Vec<Difference>,
}

impl TenantDrift {
    pub fn drifted(&self) -> bool {
        !self.differences.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct DriftReport {
    pub checked: usize,
    /// Only the tenants that drifted, oldest first.
    pub drifted: Vec<TenantDrift>,
}

/// One object of a catalog: the table it belongs to and its normalised definition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Object {
    table: String,
    definition: String,
}

/// The structure of one schema, keyed by object type and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog(BTreeMap<(ObjectType, String), Object>);

/// Compares one tenant's schema with its revision. The schema's migration lock is held while
/// its ledger and catalog are read ([`migrator::begin_locked`]).
pub async fn tenant_drift(
    db: &(impl TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait),
    tenant: &tenants::Model,
) -> AppResult<TenantDrift> {
    let schema = schema_of(tenant);
    let (applied, actual) = if migrator::schema_exists(db, &schema).await? {
        let (txn, migrations) = migrator::begin_locked(db, &schema).await?;
        let applied = migrations.applied.len();
        let actual = read_catalog(&txn, &schema).await?;
        txn.rollback().await?;
        (applied, actual)
    } else if tenant.schema_provisioned {
        // The schema is gone: everything its recorded revision has is missing.
        let applied = match tenant.current_revision.as_deref() {
            Some(name) => Target::Revision(name.to_owned()).applied_count(),
            None => 0,
        };
        (applied, Catalog::default())
    } else {
        // Not provisioned yet: nothing is expected.
        return Ok(TenantDrift {
            tenant_id: tenant.id,
            schema_name: tenant.schema_name.clone(),
            revision: None,
            differences: Vec::new(),
        });
    };
    let expected = reference(db, applied).await?;
    Ok(TenantDrift {
        tenant_id: tenant.id,
        schema_name: tenant.schema_name.clone(),
        revision: applied
            .checked_sub(1)
            .map(|last| tenant_migration_names()[last].clone()),
        differences: compare(&expected, &actual),
    })
}

/// Checks every live tenant on its own server, at most `concurrency` at a time (each check
/// holds one connection).
pub async fn fleet_report(state: &AppState, concurrency: usize) -> AppResult<DriftReport> {
    let tenants = registry::all_live(&state.db).await?;
    let checked = tenants.len();
    let mut drifts: Vec<(usize, TenantDrift)> = stream::iter(tenants.into_iter().enumerate())
        .map(|(position, tenant)| async move {
            let db = servers::pool_of(state, &tenant).await?;
            tenant_drift(&db, &tenant)
                .await
                .map(|drift| (position, drift))
        })
        .buffer_unordered(concurrency.max(1))
        .try_filter(|(_, drift)| std::future::ready(drift.drifted()))
        .try_collect()
        .await?;
    drifts.sort_by_key(|(position, _)| *position);
    Ok(DriftReport {
        checked,
        drifted: drifts.into_iter().map(|(_, drift)| drift).collect(),
    })
}

type Reference = Arc<OnceCell<Arc<Catalog>>>;

/// Built references by number of applied migrations; each built at most once per process, also
/// when many checks ask for it at the same moment.
static REFERENCES: LazyLock<Mutex<HashMap<usize, Reference>>> = LazyLock::new(Default::default);

/// The structure of a schema with the first `applied` migrations applied.
async fn reference(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    applied: usize,
) -> AppResult<Arc<Catalog>> {
    let cell = REFERENCES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(applied)
        .or_default()
        .clone();
    let catalog = cell
        .get_or_try_init(|| async { build_reference(db, applied).await.map(Arc::new) })
        .await?;
    Ok(catalog.clone())
}

async fn build_reference(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    applied: usize,
) -> AppResult<Catalog> {
    let scratch = SchemaName::parse(&format!("tenantgraph_drift_{}", Uuid::new_v4().simple()))
        .expect("a valid schema name");
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("CREATE SCHEMA {}", scratch.quoted()))
        .await?;
    migrator::pin_and_lock(&txn, &scratch).await?;
    let target = match applied {
        0 => Target::Base,
        n => Target::Revision(tenant_migration_names()[n - 1].clone()),
    };
    migrator::migrate_whole_in(&txn, &target).await?;
    let catalog = read_catalog(&txn, &scratch).await?;
    // Never committed: the scratch schema exists for nobody else, and not after this.
    txn.rollback().await?;
    Ok(catalog)
}

const TABLES: &str = "SELECT c.relname AS tbl, c.relname AS name, \
       CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END AS definition \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')";

const COLUMNS: &str = "SELECT c.relname AS tbl, c.relname || '.' || a.attname AS name, \
       format_type(a.atttypid, a.atttypmod) \
         || CASE WHEN a.attnotnull THEN ' not null' ELSE ' null' END \
         || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS definition \
     FROM pg_attribute a \
     JOIN pg_class c ON c.oid = a.attrelid \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped";

/// Indexes that back a primary key, unique or exclusion constraint are reported as that
/// constraint, not twice.
const INDEXES: &str = "SELECT t.relname AS tbl, i.relname AS name, \
       pg_get_indexdef(x.indexrelid) AS definition \
     FROM pg_index x \
     JOIN pg_class i ON i.oid = x.indexrelid \
     JOIN pg_class t ON t.oid = x.indrelid \
     JOIN pg_namespace n ON n.oid = t.relnamespace \
     WHERE n.nspname = $1 AND t.relkind IN ('r', 'p') \
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid \
                       AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x'))";

const CONSTRAINTS: &str = "SELECT t.relname AS tbl, t.relname || '.' || k.conname AS name, \
       pg_get_constraintdef(k.oid) AS definition \
     FROM pg_constraint k \
     JOIN pg_class t ON t.oid = k.conrelid \
     JOIN pg_namespace n ON n.oid = t.relnamespace \
     WHERE n.nspname = $1 AND t.relkind IN ('r', 'p')";

/// Reads the structure of `schema` in `txn`, with its name cut out of every definition.
async fn read_catalog(txn: &DatabaseTransaction, schema: &SchemaName) -> Result<Catalog, DbErr> {
    // Nothing of ours on the search path: every name comes out qualified, the same way for the
    // tenant's schema and the scratch one.
    txn.execute_unprepared("SELECT set_config('search_path', 'pg_catalog', true)")
        .await?;
    let mut catalog = BTreeMap::new();
    for (object_type, sql) in [
        (ObjectType::Table, TABLES),
        (ObjectType::Column, COLUMNS),
        (ObjectType::Index, INDEXES),
        (ObjectType::Constraint, CONSTRAINTS),
    ] {
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                [schema.as_str().into()],
            ))
            .await?;
        for row in rows {
            let table: String = row.try_get("", "tbl")?;
            if table == LEDGER {
                continue;
            }
            let name: String = row.try_get("", "name")?;
            let definition: String = row.try_get("", "definition")?;
            catalog.insert(
                (object_type, name),
                Object {
                    table,
                    definition: schema.replace_qualifier(&definition, ""),
                },
            );
        }
    }
    Ok(Catalog(catalog))
}

/// Every difference between the structure expected and the one found. The columns, indexes and
/// constraints of a table that is missing or unexpected as a whole are not listed one by one.
fn compare(expected: &Catalog, actual: &Catalog) -> Vec<Difference> {
    let whole_tables = |from: &Catalog, other: &Catalog| -> Vec<String> {
        from.0
            .keys()
            .filter(|(object_type, name)| {
                *object_type == ObjectType::Table
                    && !other.0.contains_key(&(ObjectType::Table, name.clone()))
            })
            .map(|(_, name)| name.clone())
            .collect()
    };
    let missing_tables = whole_tables(expected, actual);
    let unexpected_tables = whole_tables(actual, expected);
    let mut differences = Vec::new();
    for ((object_type, name), want) in &expected.0 {
        match actual.0.get(&(*object_type, name.clone())) {
            None => {
                if *object_type != ObjectType::Table && missing_tables.contains(&want.table) {
                    continue;
                }
                differences.push(Difference {
                    kind: DriftKind::Missing,
                    object_type: *object_type,
                    name: name.clone(),
                    detail: format!("expected {}", want.definition),
                });
            }
            Some(found) if found.definition != want.definition => differences.push(Difference {
                kind: DriftKind::Changed,
                object_type: *object_type,
                name: name.clone(),
                detail: format!("expected {}, found {}", want.definition, found.definition),
            }),
            Some(_) => {}
        }
    }
    for ((object_type, name), found) in &actual.0 {
        if expected.0.contains_key(&(*object_type, name.clone()))
            || (*object_type != ObjectType::Table && unexpected_tables.contains(&found.table))
        {
            continue;
        }
        differences.push(Difference {
            kind: DriftKind::Unexpected,
            object_type: *object_type,
            name: name.clone(),
            detail: format!("found {}", found.definition),
        });
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(objects: &[(ObjectType, &str, &str, &str)]) -> Catalog {
        Catalog(
            objects
                .iter()
                .map(|(t, name, table, def)| {
                    (
                        (*t, (*name).to_owned()),
                        Object {
                            table: (*table).to_owned(),
                            definition: (*def).to_owned(),
                        },
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_dropped_table_is_one_difference_not_one_per_column() {
        let expected = catalog(&[
            (ObjectType::Table, "a", "a", "table"),
            (ObjectType::Column, "a.id", "a", "uuid not null"),
            (ObjectType::Column, "b.x", "b", "text null"),
            (ObjectType::Table, "b", "b", "table"),
        ]);
        let actual = catalog(&[
            (ObjectType::Table, "b", "b", "table"),
            (ObjectType::Column, "b.x", "b", "text not null"),
            (ObjectType::Table, "c", "c", "table"),
            (ObjectType::Column, "c.y", "c", "text null"),
        ]);
        let found: Vec<_> = compare(&expected, &actual)
            .into_iter()
            .map(|d| (d.kind, d.object_type, d.name))
            .collect();
        assert_eq!(
            found,
            vec![
                (DriftKind::Missing, ObjectType::Table, "a".to_owned()),
                (DriftKind::Changed, ObjectType::Column, "b.x".to_owned()),
                (DriftKind::Unexpected, ObjectType::Table, "c".to_owned()),
            ]
        );
    }
}

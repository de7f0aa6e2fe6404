//! Tenant migrations rendered to SQL once per process, so that a fleet migration moves a tenant
//! (its pending steps, their ledger rows and the registry's record) in one round trip, and a
//! schema being provisioned gets its ledger and every step up to its revision in one round trip
//! of its provisioning transaction.
//!
//! Each migration's `up` and `down` run once against a connection that records their statements
//! instead of executing them. A way (up or down) that cannot be rendered goes through the
//! migrator ([`super::migrator::migrate_whole_in`]) for every tenant whose path crosses it: one
//! that asks the database anything (it reads data or the catalog, so its statements depend on
//! the schema), binds values, or runs outside a transaction.

use std::sync::{Arc, Mutex};

use migration::{
    TenantMigrator,
    sea_orm_migration::{MigrationTrait, MigratorTrait, SchemaManager, seaql_migrations},
};
use sea_orm::{
    Database, DatabaseConnection, DbBackend, DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow,
    Statement,
    sea_query::{Expr, ExprTrait, PostgresQueryBuilder, Query, QueryBuilder},
};
use tokio::sync::OnceCell;

use crate::{
    error::code_of,
    primitives::{
        locks::{self, Take},
        schema_name::SchemaName,
    },
    tenancy::migrator::LOCK_TIMEOUT,
};

/// What the script's ledger check (`public.tenantgraph_check_ledger`) raises when the ledger
/// does not hold what the registry says is applied.
const LEDGER_MOVED: &str = "TGL01";
/// `undefined_table`: the schema has no ledger (never migrated, or gone).
const NO_LEDGER: &str = "42P01";

/// One migration's statements each way; `None` where that way cannot be rendered.
struct Rendered {
    name: String,
    up: Option<Vec<String>>,
    down: Option<Vec<String>>,
}

#[derive(Clone, Copy)]
enum Way {
    Up,
    Down,
}

/// Every tenant migration, and the ledger sea-orm-migration creates before the first one.
struct Migrations {
    /// `CREATE TABLE IF NOT EXISTS seaql_migrations ...`, as the migrator's `install` sends it.
    ledger: Option<Vec<String>>,
    steps: Vec<Rendered>,
}

/// Every tenant migration, rendered on first use.
async fn rendered() -> &'static Migrations {
    static RENDERED: OnceCell<Migrations> = OnceCell::const_new();
    RENDERED
        .get_or_init(|| async {
            let mut steps = Vec::new();
            for migration in TenantMigrator::migrations() {
                steps.push(Rendered {
                    name: migration.name().to_owned(),
                    up: render(migration.as_ref(), Way::Up).await,
                    down: render(migration.as_ref(), Way::Down).await,
                });
            }
            let ledger = match recorder().await {
                Some((db, recording)) => {
                    let installed = TenantMigrator::install(&db).await;
                    recorded(&recording, installed)
                }
                None => None,
            };
            Migrations { ledger, steps }
        })
        .await
}

/// The statements of one way of `migration`, or `None` when it cannot be rendered.
async fn render(migration: &dyn MigrationTrait, way: Way) -> Option<Vec<String>> {
    // sea-orm-migration runs a migration outside a transaction only when it asks to.
    if migration.use_transaction() == Some(false) {
        return None;
    }
    let (db, recording) = recorder().await?;
    let manager = SchemaManager::new(&db);
    let ran = match way {
        Way::Up => migration.up(&manager).await,
        Way::Down => migration.down(&manager).await,
    };
    recorded(&recording, ran)
}

/// A connection that records what it is asked to execute, and its recording.
async fn recorder() -> Option<(DatabaseConnection, Arc<Mutex<Recording>>)> {
    let recording = Arc::new(Mutex::new(Recording {
        statements: Vec::new(),
        renderable: true,
    }));
    let recorder: Arc<Box<dyn ProxyDatabaseTrait>> =
        Arc::new(Box::new(Recorder(recording.clone())));
    let db = Database::connect_proxy(DbBackend::Postgres, recorder)
        .await
        .ok()?;
    Some((db, recording))
}

/// What a run on a [`recorder`] sent, if it ran through and can be replayed as it is.
fn recorded(recording: &Mutex<Recording>, ran: Result<(), DbErr>) -> Option<Vec<String>> {
    let recording = recording.lock().expect("the recording is never poisoned");
    (ran.is_ok() && recording.renderable).then(|| recording.statements.clone())
}

#[derive(Debug)]
struct Recording {
    statements: Vec<String>,
    /// False once the migration asked the database something or bound a value.
    renderable: bool,
}

/// A connection that records what it is asked to execute.
#[derive(Debug)]
struct Recorder(Arc<Mutex<Recording>>);

#[async_trait::async_trait]
impl ProxyDatabaseTrait for Recorder {
    async fn query(&self, _statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.0.lock().expect("never poisoned").renderable = false;
        Err(DbErr::Custom(
            "a pre-rendered migration cannot read from the database".into(),
        ))
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        let mut recording = self.0.lock().expect("never poisoned");
        if statement.values.as_ref().is_some_and(|v| !v.0.is_empty()) {
            recording.renderable = false;
        }
        recording.statements.push(statement.sql);
        Ok(ProxyExecResult::default())
    }
}

/// One transaction, sent as one simple query, that takes `schema` from `from` applied migrations
/// to `to`: the pin and the migration lock of [`super::migrator::pin_and_lock`], a check that the
/// ledger holds exactly the first `from` migrations, each step with the ledger row
/// sea-orm-migration writes for it, then `record` (SQL recording the move, in the same
/// transaction), and `COMMIT`. `None` when a step on the way cannot be rendered.
///
/// A schema whose ledger is not where `from` says makes the script fail with an error for which
/// [`ledger_moved`] is true, before any step.
pub async fn script(schema: &SchemaName, from: usize, to: usize, record: &str) -> Option<String> {
    let all = &rendered().await.steps;
    let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
    if from.max(to) > names.len() {
        return None;
    }
    let literal = |text: &str| PostgresQueryBuilder.value_to_string(&text.into());
    let mut sql = format!(
        "BEGIN;\nSELECT set_config('search_path', {path}, true), \
         set_config('lock_timeout', {timeout}, true), {lock};\n",
        path = literal(&schema.quoted()),
        timeout = literal(LOCK_TIMEOUT),
        lock = locks::take_key(Take::Transaction, &literal(&locks::schema_key(schema))),
    );
    // Compared as the ledger is read: ordered by version.
    let mut expected = names[..from].to_vec();
    expected.sort_unstable();
    let expected = expected
        .iter()
        .map(|name| literal(name))
        .collect::<Vec<_>>()
        .join(", ");
    // `public.tenantgraph_check_ledger` raises LEDGER_MOVED (or NO_LEDGER) when it is not.
    sql.push_str(&format!(
        "SELECT public.tenantgraph_check_ledger({schema}, ARRAY[{expected}]::text[]);\n",
        schema = literal(schema.as_str()),
    ));
    if from <= to {
        push_up(&mut sql, &all[from..to])?;
    } else {
        for migration in all[to..from].iter().rev() {
            for statement in migration.down.as_ref()? {
                sql.push_str(&format!("{statement};\n"));
            }
            let row = Query::delete()
                .from_table(seaql_migrations::Entity)
                .and_where(Expr::col(seaql_migrations::Column::Version).eq(migration.name.as_str()))
                .to_string(PostgresQueryBuilder);
            sql.push_str(&format!("{row};\n"));
        }
    }
    sql.push_str(&format!("{record};\nCOMMIT;"));
    Some(sql)
}

/// The statements that take a schema with no ledger (one just created, in the transaction that
/// created it and still holds its migration lock) to `to` applied migrations, sent in one round
/// trip: the ledger as sea-orm-migration creates it, then each step with its ledger row.
/// `None` when the ledger or a step cannot be rendered.
pub async fn from_base(to: usize) -> Option<String> {
    let all = rendered().await;
    let mut sql = String::new();
    for statement in all.ledger.as_ref()? {
        sql.push_str(&format!("{statement};\n"));
    }
    push_up(&mut sql, all.steps.get(..to)?)?;
    Some(sql)
}

/// Appends each of `steps` up, followed by the ledger row sea-orm-migration writes for it;
/// `None` when a step cannot be rendered.
fn push_up(sql: &mut String, steps: &[Rendered]) -> Option<()> {
    let applied_at = chrono::Utc::now().timestamp();
    for migration in steps {
        for statement in migration.up.as_ref()? {
            sql.push_str(&format!("{statement};\n"));
        }
        let row = Query::insert()
            .into_table(seaql_migrations::Entity)
            .columns([
                seaql_migrations::Column::Version,
                seaql_migrations::Column::AppliedAt,
            ])
            .values_panic([migration.name.as_str().into(), applied_at.into()])
            .to_string(PostgresQueryBuilder);
        sql.push_str(&format!("{row};\n"));
    }
    Some(())
}

/// Whether a [`script`] failed because the schema's ledger is not where it was told (or the
/// schema has none): nothing was changed, and the migrator, which reads the ledger, can take
/// the schema where it has to go.
pub fn ledger_moved(err: &DbErr) -> bool {
    code_of(err).is_some_and(|code| code == LEDGER_MOVED || code == NO_LEDGER)
}

#[cfg(test)]
mod tests {
    use migration::sea_orm_migration::MigrationName;
    use sea_orm::ConnectionTrait;

    use super::*;

    /// Reads the catalog before it changes anything.
    struct Reads;

    impl MigrationName for Reads {
        fn name(&self) -> &str {
            "m20990101_000001_reads"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Reads {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            if !manager.has_column("person", "nickname").await? {
                manager
                    .get_connection()
                    .execute_unprepared("ALTER TABLE person ADD COLUMN nickname text")
                    .await?;
            }
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE person DROP COLUMN nickname")
                .await
                .map(drop)
        }
    }

    /// Asks to run outside a transaction.
    struct Concurrently;

    impl MigrationName for Concurrently {
        fn name(&self) -> &str {
            "m20990101_000002_concurrently"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Concurrently {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .get_connection()
                .execute_unprepared("CREATE INDEX CONCURRENTLY idx_person_notes ON person (notes)")
                .await
                .map(drop)
        }

        fn use_transaction(&self) -> Option<bool> {
            Some(false)
        }
    }

    #[tokio::test]
    async fn the_tenant_migrations_render_both_ways() {
        let all = &rendered().await.steps;
        assert_eq!(all.len(), migration::tenant_migration_names().len());
        for migration in all {
            assert!(
                migration.up.as_ref().is_some_and(|s| !s.is_empty()),
                "{}",
                migration.name
            );
            assert!(
                migration.down.as_ref().is_some_and(|s| !s.is_empty()),
                "{}",
                migration.name
            );
        }
    }

    #[tokio::test]
    async fn a_migration_that_reads_or_needs_no_transaction_is_not_rendered() {
        assert_eq!(render(&Reads, Way::Up).await, None);
        assert_eq!(
            render(&Reads, Way::Down).await,
            Some(vec!["ALTER TABLE person DROP COLUMN nickname".to_owned()])
        );
        assert_eq!(render(&Concurrently, Way::Up).await, None);
    }

    #[tokio::test]
    async fn a_script_checks_the_ledger_then_writes_the_steps_and_their_rows() {
        let schema = SchemaName::parse("tenant_a").unwrap();
        let mut names = migration::tenant_migration_names();
        let last = names.len();
        let up = script(&schema, last - 1, last, "SELECT 1").await.unwrap();
        assert!(up.starts_with(
            "BEGIN;\nSELECT set_config('search_path', '\"tenant_a\"', true), \
             set_config('lock_timeout', '5s', true), \
             pg_advisory_xact_lock(hashtextextended('tenantgraph.migrate.tenant_a', 0));\n"
        ));
        names.truncate(last - 1);
        names.sort();
        let ledger = names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(up.contains(&format!(
            "SELECT public.tenantgraph_check_ledger('tenant_a', ARRAY[{ledger}]::text[]);\n"
        )));
        let head = migration::tenant_migration_names().pop().unwrap();
        assert!(up.contains(&format!(
            "INSERT INTO \"seaql_migrations\" (\"version\", \"applied_at\") VALUES ('{head}', "
        )));
        assert!(up.ends_with("SELECT 1;\nCOMMIT;"));
        let down = script(&schema, last, last - 1, "SELECT 1").await.unwrap();
        assert!(down.contains(&format!(
            "DELETE FROM \"seaql_migrations\" WHERE \"version\" = '{head}'"
        )));
        assert!(script(&schema, 0, last + 1, "SELECT 1").await.is_none());
    }

    #[tokio::test]
    async fn from_base_creates_the_ledger_then_writes_every_step_and_its_row() {
        let names = migration::tenant_migration_names();
        let all = from_base(names.len()).await.unwrap();
        assert!(
            all.starts_with("CREATE TABLE IF NOT EXISTS \"seaql_migrations\" ("),
            "{all}"
        );
        let mut rows = 0;
        for name in &names {
            let row = format!(
                "INSERT INTO \"seaql_migrations\" (\"version\", \"applied_at\") VALUES ('{name}', "
            );
            let at = all
                .find(&row)
                .unwrap_or_else(|| panic!("no ledger row for {name}"));
            assert!(at > rows, "{name} is out of order");
            rows = at;
        }
        assert!(!all.contains("BEGIN") && !all.contains("COMMIT"));
        let base = from_base(0).await.unwrap();
        assert!(!base.contains("INSERT"));
        assert!(from_base(names.len() + 1).await.is_none());
    }
}

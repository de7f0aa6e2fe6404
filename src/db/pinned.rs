//! Transactions pinned to one tenant schema, and single-statement reads gated on the same
//! ownership check ([`read_as_owner`]).
//!
//! The search path is set with `set_config(.., true)`, the function form of `SET LOCAL`: it ends
//! with the transaction, so a pooled connection never carries a tenant's schema into the next
//! request. A gated read sets none: it names the tenant's table with its schema.

use std::time::Instant;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, ExecResult, QueryFilter, QueryResult, QueryTrait, RuntimeErr, Select, Statement,
    TransactionTrait, TryGetable,
    sea_query::{Alias, Expr, UpdateStatement},
    sqlx::{
        AssertSqlSafe, Postgres, SqlSafeStr,
        pool::PoolConnection,
        postgres::{PgDatabaseError, PgTransactionManager},
    },
};
use sea_query_sqlx::SqlxValues;
use sqlx_core::transaction::TransactionManager;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{
    config::DatabasePooler,
    db::{
        pool::{OwnershipTable, Pool, StatementObserver},
        reads,
        share::DbSlot,
    },
    primitives::schema_name::SchemaName,
};

/// Begins a transaction whose unqualified table names resolve in `schema` only. For work on a
/// schema as such (provisioning, migrations, seeding); requests acting for a tenant use
/// [`begin_as_owner`].
pub(crate) async fn begin_in_schema(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    schema: &SchemaName,
) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('search_path', $1, true)",
        [schema.quoted().into()],
    ))
    .await?;
    Ok(txn)
}

/// Ends a transaction that only read. Its ROLLBACK (for a reader the same as a COMMIT) is queued
/// on the connection and sent when the pool takes the connection back, so the request does not
/// wait one more round trip for it.
pub fn end_read<T: ConnectionTrait>(txn: T) {
    drop(txn);
}

/// A transaction acting for a tenant, holding its share of the pool ([`DbSlot`]) until it
/// ends. Used like the transaction itself (it is a [`ConnectionTrait`]).
pub struct TenantTransaction {
    txn: PinnedTransaction,
    _slot: DbSlot,
}

impl TenantTransaction {
    pub(crate) fn new(txn: PinnedTransaction, slot: DbSlot) -> Self {
        TenantTransaction { txn, _slot: slot }
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for TenantTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }
}

/// `division_by_zero`: what the pin raises when the registry no longer backs it (see
/// [`pin_sql`]).
const NOT_OWNER: &str = "22012";

/// Begins a transaction pinned to `schema` for tenant `tenant_id`, or `None` when the registry
/// no longer says that this tenant is active and owns that schema.
///
/// The pin is selected from the registry row, so the proof and the pin are one statement: a
/// context remembered anywhere (a socket, a DataLoader, a batch) can never reach a schema that
/// was dropped and made again for another tenant, nor a tenant deactivated since. `BEGIN` and the
/// pin travel together as one simple query: one round trip before the first read.
pub async fn begin_as_owner(
    db: &Pool,
    tenant_id: Uuid,
    schema: &SchemaName,
) -> Result<Option<PinnedTransaction>, DbErr> {
    let conn = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(sqlx_error_to_conn_err)?;
    // Until the transaction is known to be open and pinned, a connection given up half-way (the
    // request was cancelled) is closed rather than handed to the next request in an unknown
    // state.
    let mut guard = Unsettled(Some(conn));
    let conn = guard.0.as_mut().expect("held until settled");
    let sql = pin_sql(db.pooler(), db.ownership(), tenant_id, schema);
    let started = Instant::now();
    let begun =
        PgTransactionManager::begin(conn, Some(AssertSqlSafe(sql.clone()).into_sql_str())).await;
    db.observer().observe(
        &Statement::from_string(DbBackend::Postgres, sql),
        started,
        begun.is_err(),
    );
    match begun {
        Ok(()) => Ok(Some(PinnedTransaction {
            conn: Mutex::new(guard.settle()),
            observer: db.observer().clone(),
        })),
        Err(err) => {
            // The failed statement left the connection in an aborted transaction block; it goes
            // back to the pool only once that is rolled back (still guarded meanwhile).
            let conn = guard.0.as_mut().expect("held until settled");
            let rolled_back = sea_orm::sqlx::raw_sql(AssertSqlSafe("ROLLBACK"))
                .execute(&mut **conn)
                .await
                .is_ok();
            let mut conn = guard.settle();
            if !rolled_back {
                conn.close_on_drop();
            }
            let err = sqlx_error_to_conn_err(err);
            if is_not_owner(&err) {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

/// `BEGIN` and the pin as one simple query. The values are written into the text (a simple query
/// has no parameters): a UUID, and a schema name that validation keeps to `[a-z0-9_]`, so neither
/// can close the quotes around it.
///
/// `HAVING 1 / count(*) = 1` makes a pin the registry does not back fail (with
/// `division_by_zero`) instead of returning no row: the result of a `BEGIN` is not read, and a
/// failure aborts the transaction, so nothing can run unpinned in it.
///
/// On a data server the registry is not at hand: its mirror `public.tenant_placements` (see
/// [`crate::db::servers`]), which the control plane marks before it fences a tenant, stands in.
fn pin_sql(
    pooler: DatabasePooler,
    ownership: OwnershipTable,
    tenant_id: Uuid,
    schema: &SchemaName,
) -> String {
    debug_assert!(crate::primitives::schema_name::is_valid_identifier(
        schema.as_str()
    ));
    // Behind PgBouncer: statements other clients left on this server connection go, and the
    // search path starts without any schema of ours (see `Pool`).
    let reset = match pooler {
        DatabasePooler::PgBouncer => "DEALLOCATE ALL; SET LOCAL search_path = pg_catalog; ",
        DatabasePooler::None => "",
    };
    format!(
        "BEGIN; {reset}SELECT set_config('search_path', '{quoted}', true) FROM {owners} \
         HAVING 1 / count(*) = 1",
        quoted = schema.quoted(),
        owners = owner_rows(
            ownership,
            &format!("'{tenant_id}'"),
            &format!("'{}'", schema.as_str())
        ),
    )
}

/// The row of the table `ownership` names that backs tenant `id` (an SQL expression) owning
/// `schema` (another) while it is active: what a pin and a gated read count to be 1.
fn owner_rows(ownership: OwnershipTable, id: &str, schema: &str) -> String {
    let owners = match ownership {
        OwnershipTable::Registry => "public.tenants WHERE deleted_at IS NULL AND",
        OwnershipTable::Placements => "public.tenant_placements WHERE",
    };
    format!("{owners} id = {id} AND schema_name = {schema} AND status = 'ACTIVE'")
}

/// Runs `select`, a read of one table of a tenant's, as one statement outside any transaction:
/// the table qualified with `schema`, the rows gated on the same ownership check as
/// [`begin_as_owner`]'s pin (failing with `division_by_zero` unless the registry backs tenant
/// `tenant_id` owning `schema`). `None` when it does not.
///
/// The check and the read share the statement's snapshot, and no `search_path` is set: one
/// round trip, no transaction to end, and the statement's plan (its text names the schema)
/// survives on the connection for the tenant's next read. Only the table of `E` is qualified;
/// the pool's search path holds no schema of ours, so any other table the statement names
/// (a join, a subquery) fails it instead of resolving anywhere.
pub async fn read_as_owner<E: EntityTrait>(
    db: &Pool,
    tenant_id: Uuid,
    schema: &SchemaName,
    select: Select<E>,
) -> Result<Option<Vec<TenantRow>>, DbErr> {
    let mut query = select.into_query();
    query
        .from_clear()
        .from((Alias::new(schema.as_str()), E::default()))
        .and_where(Expr::cust_with_values(
            format!(
                "(SELECT 1 / count(*) FROM {}) = 1",
                owner_rows(db.ownership(), "$1", "$2")
            ),
            [tenant_id.into(), schema.as_str().into()] as [sea_orm::Value; 2],
        ));
    let statement = db.get_database_backend().build(&query);
    match db.reads() {
        Some(reads) => {
            let started = Instant::now();
            let rows = reads.query_all(&statement).await;
            db.observer().observe(&statement, started, rows.is_err());
            match rows {
                Ok(rows) => Ok(Some(rows.into_iter().map(TenantRow::Read).collect())),
                Err(err) if err.code().is_some_and(|code| code.code() == NOT_OWNER) => Ok(None),
                Err(err) => Err(err.into()),
            }
        }
        None => match db.query_all_raw(statement).await {
            Ok(rows) => Ok(Some(rows.into_iter().map(TenantRow::Pooled).collect())),
            Err(err) if is_not_owner(&err) => Ok(None),
            Err(err) => Err(err),
        },
    }
}

/// A row of a tenant's table, as the driver that read it returned it: read connections'
/// rows are read straight from the wire format, without building SeaORM's row first.
#[derive(Debug)]
pub enum TenantRow {
    /// From the pool (behind PgBouncer, or in a pinned transaction).
    Pooled(QueryResult),
    /// From a read connection.
    Read(tokio_postgres::Row),
}

impl TenantRow {
    /// The value of the statement's column at `index`.
    pub fn get<T>(&self, index: usize) -> Result<T, DbErr>
    where
        T: TryGetable + for<'a> tokio_postgres::types::FromSql<'a>,
    {
        match self {
            TenantRow::Pooled(row) => row.try_get_by_index(index),
            TenantRow::Read(row) => row
                .try_get(index)
                .map_err(|err| DbErr::Type(format!("column {index}: {err}"))),
        }
    }

    /// The row as SeaORM's, to be read as a model (by column name only, see `reads::row_of`).
    pub fn into_query_result(self) -> Result<QueryResult, DbErr> {
        match self {
            TenantRow::Pooled(row) => Ok(row),
            TenantRow::Read(row) => reads::row_of(&row),
        }
    }
}

/// Whether a statement failed because the registry did not back its pin or gate.
fn is_not_owner(err: &DbErr) -> bool {
    let (DbErr::Conn(RuntimeErr::SqlxError(err))
    | DbErr::Exec(RuntimeErr::SqlxError(err))
    | DbErr::Query(RuntimeErr::SqlxError(err))) = err
    else {
        return false;
    };
    err.as_database_error()
        .and_then(|db_err| db_err.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|db_err| db_err.code() == NOT_OWNER)
}

/// Runs `script`, which opens and commits its own transaction (`BEGIN; …; COMMIT`), as one
/// simple query on a pooled connection: one round trip. Returns the rows its statements return,
/// in order. A failing statement skips the rest of the script and leaves its transaction aborted;
/// it is rolled back before the connection goes back to the pool.
pub(crate) async fn run_script(db: &Pool, script: String) -> Result<Vec<QueryResult>, DbErr> {
    let conn = db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(sqlx_error_to_conn_err)?;
    // A connection given up half-way is closed rather than reused in an unknown state.
    let mut guard = Unsettled(Some(conn));
    let conn = guard.0.as_mut().expect("held until settled");
    let started = Instant::now();
    let ran = sea_orm::sqlx::raw_sql(AssertSqlSafe(script.as_str()))
        .fetch_all(&mut **conn)
        .await;
    db.observer().observe(
        &Statement::from_string(DbBackend::Postgres, script),
        started,
        ran.is_err(),
    );
    match ran {
        Ok(rows) => {
            guard.settle();
            Ok(rows.into_iter().map(Into::into).collect())
        }
        Err(err) => {
            let rolled_back = sea_orm::sqlx::raw_sql(AssertSqlSafe("ROLLBACK"))
                .execute(&mut **conn)
                .await
                .is_ok();
            let mut conn = guard.settle();
            if !rolled_back {
                conn.close_on_drop();
            }
            Err(sqlx_error_to_exec_err(err))
        }
    }
}

/// The UPDATE of `row` by its primary key column `key` (which `row` holds unchanged), for a
/// script of `run_script` or a change handed to the event writer: render it with
/// `to_string(PostgresQueryBuilder)`, which writes the values in.
pub fn update_by_key<A: ActiveModelTrait>(
    row: A,
    key: <A::Entity as EntityTrait>::Column,
) -> UpdateStatement {
    let id = row.get(key).into_value().expect("the row holds its key");
    A::Entity::update_many()
        .set(row)
        .filter(key.eq(id))
        .into_query()
}

/// A pooled connection between acquiring it and knowing its transaction's state.
struct Unsettled(Option<PoolConnection<Postgres>>);

impl Unsettled {
    fn settle(mut self) -> PoolConnection<Postgres> {
        self.0.take().expect("settled once")
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// A transaction pinned to one tenant's schema (see [`begin_as_owner`]). Dropped without
/// [`commit`](Self::commit), it rolls back: the ROLLBACK is queued on the connection and sent
/// when the pool takes the connection back.
pub struct PinnedTransaction {
    conn: Mutex<PoolConnection<Postgres>>,
    observer: StatementObserver,
}

impl std::fmt::Debug for PinnedTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinnedTransaction")
    }
}

impl PinnedTransaction {
    pub async fn commit(self) -> Result<(), DbErr> {
        let mut conn = self.conn.lock().await;
        PgTransactionManager::commit(&mut conn)
            .await
            .map_err(sqlx_error_to_query_err)
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        let mut conn = self.conn.lock().await;
        PgTransactionManager::rollback(&mut conn)
            .await
            .map_err(sqlx_error_to_query_err)
    }

    async fn run<T>(
        &self,
        stmt: &Statement,
        work: impl AsyncFnOnce(&mut PoolConnection<Postgres>) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let mut conn = self.conn.lock().await;
        let started = Instant::now();
        let result = work(&mut conn).await;
        self.observer.observe(stmt, started, result.is_err());
        result
    }
}

impl Drop for PinnedTransaction {
    fn drop(&mut self) {
        // A no-op after commit or rollback (the transaction depth is 0 then).
        PgTransactionManager::start_rollback(self.conn.get_mut());
    }
}

// As SeaORM wraps sqlx errors, so that errors from here read like those from its transactions.
fn sqlx_error_to_conn_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(err.into()))
}

fn sqlx_error_to_exec_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(err.into()))
}

fn sqlx_error_to_query_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(err.into()))
}

fn sqlx_query(stmt: &Statement) -> sea_orm::sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(sea_orm::Values(Vec::new()));
    sea_orm::sqlx::query_with(AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
}

#[async_trait::async_trait]
impl ConnectionTrait for PinnedTransaction {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.run(&stmt, async |conn| {
            sqlx_query(&stmt)
                .execute(&mut **conn)
                .await
                .map(Into::into)
                .map_err(sqlx_error_to_exec_err)
        })
        .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let stmt = Statement::from_string(DbBackend::Postgres, sql);
        self.run(&stmt, async |conn| {
            sea_orm::sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut **conn)
                .await
                .map(Into::into)
                .map_err(sqlx_error_to_exec_err)
        })
        .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.run(&stmt, async |conn| {
            sqlx_query(&stmt)
                .fetch_optional(&mut **conn)
                .await
                .map(|row| row.map(Into::into))
                .map_err(sqlx_error_to_query_err)
        })
        .await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.run(&stmt, async |conn| {
            sqlx_query(&stmt)
                .fetch_all(&mut **conn)
                .await
                .map(|rows| rows.into_iter().map(Into::into).collect())
                .map_err(sqlx_error_to_query_err)
        })
        .await
    }

    fn support_returning(&self) -> bool {
        true
    }
}

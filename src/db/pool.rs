//! The pool every request and job shares, straight to PostgreSQL or behind PgBouncer.
//!
//! sqlx sends a statement with parameters in two round trips: `Parse`/`Describe`/`Sync`, then
//! `Bind`/`Execute`/`Sync`. Behind PgBouncer in transaction mode the server connection is
//! handed to another client as soon as the first round trip ends outside a transaction, so the
//! second one may reach a server that never saw the statement, or one where another client's
//! statement of the same name waits (sqlx names them `sqlx_s_1`, `sqlx_s_2`, … on every
//! connection). Behind PgBouncer this pool therefore
//! - keeps no statement cache (`statement_cache_capacity(0)`): no statement is used twice;
//! - runs every statement sent outside a transaction in a transaction of its own, committed
//!   before the call returns, so both round trips reach the same server;
//! - begins every transaction with `DEALLOCATE ALL`, so statements that other clients left on
//!   the server cannot collide with this transaction's, and with
//!   `SET LOCAL search_path = pg_catalog`: no schema of ours is on the path unless a pinned
//!   transaction puts one there, whatever the server connection's own default is;
//! - sets nothing on the session (a session `SET` would stay on whichever server connection
//!   ran it, for other clients to find).
//!
//! So behind PgBouncer nothing goes through this pool that cannot run in a transaction block
//! (`CREATE DATABASE`, `VACUUM`, …). Straight to PostgreSQL it is SeaORM's pool as it is, with
//! `search_path` set once per connection, and gated reads have connections of their own
//! ([`super::reads`]): up to as many again.

use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Instant};

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, IsolationLevel, QueryResult, Statement, TransactionError, TransactionOptions,
    TransactionTrait,
};

use super::reads::ReadConnections;
use crate::config::DatabasePooler;

/// A pool of connections; see the module documentation for what changes behind PgBouncer.
#[derive(Clone, Debug)]
pub struct Pool {
    connection: DatabaseConnection,
    pooler: DatabasePooler,
    observer: StatementObserver,
    ownership: OwnershipTable,
    /// Straight to PostgreSQL: the gated reads' own connections.
    reads: Option<ReadConnections>,
}

/// Where a pin on this pool's server reads who owns a schema (see [`super::pinned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnershipTable {
    /// The control database: the registry, `public.tenants`.
    Registry,
    /// A data server: its mirror of the registry, `public.tenant_placements`.
    Placements,
}

type MetricCallback = Arc<dyn Fn(&sea_orm::metric::Info<'_>) + Send + Sync>;

/// Who hears of every statement, also of those sent past SeaORM's own connection (the pinned
/// transactions of [`super::pinned`]).
#[derive(Clone, Default)]
pub struct StatementObserver(Option<MetricCallback>);

impl StatementObserver {
    pub(crate) fn observe(&self, statement: &Statement, started: Instant, failed: bool) {
        if let Some(callback) = &self.0 {
            callback(&sea_orm::metric::Info {
                elapsed: started.elapsed(),
                statement,
                failed,
            });
        }
    }
}

impl fmt::Debug for StatementObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatementObserver")
    }
}

impl Pool {
    pub fn new(connection: DatabaseConnection, pooler: DatabasePooler) -> Self {
        Pool {
            connection,
            pooler,
            observer: StatementObserver::default(),
            ownership: OwnershipTable::Registry,
            reads: None,
        }
    }

    /// This pool, straight to PostgreSQL at `url`, with gated reads on connections of their
    /// own (see [`super::reads`]): as many as the pool's at most, opened within its acquire
    /// timeout.
    pub(crate) fn with_read_connections(mut self, url: &str) -> Self {
        debug_assert_eq!(self.pooler, DatabasePooler::None);
        let options = self.connection.get_postgres_connection_pool().options();
        self.reads = ReadConnections::for_url(
            url,
            options.get_max_connections(),
            options.get_acquire_timeout(),
        );
        self
    }

    /// This pool with pins that prove ownership through `table`.
    pub fn owned_through(mut self, table: OwnershipTable) -> Self {
        self.ownership = table;
        self
    }

    /// Where pins on this pool read who owns a schema.
    pub fn ownership(&self) -> OwnershipTable {
        self.ownership
    }

    /// This pool, reporting its statements to whoever hears `other`'s.
    pub fn observed_like(mut self, other: &Pool) -> Self {
        if let StatementObserver(Some(callback)) = &other.observer {
            let callback = callback.clone();
            self.set_metric_callback(move |info| callback(info));
        }
        self
    }

    /// What stands between this pool and PostgreSQL.
    pub fn pooler(&self) -> DatabasePooler {
        self.pooler
    }

    fn behind_pgbouncer(&self) -> bool {
        self.pooler == DatabasePooler::PgBouncer
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.connection.ping().await
    }

    /// Closes every connection; further use fails.
    pub async fn close(self) -> Result<(), DbErr> {
        self.close_by_ref().await
    }

    pub async fn close_by_ref(&self) -> Result<(), DbErr> {
        if let Some(reads) = &self.reads {
            reads.close();
        }
        self.connection.close_by_ref().await
    }

    /// The gated reads' own connections, straight to PostgreSQL (see [`super::reads`]).
    pub fn reads(&self) -> Option<&ReadConnections> {
        self.reads.as_ref()
    }

    /// Calls `callback` for every statement sent through the pool or its transactions.
    pub fn set_metric_callback<F>(&mut self, callback: F)
    where
        F: Fn(&sea_orm::metric::Info<'_>) + Send + Sync + 'static,
    {
        let callback: MetricCallback = Arc::new(callback);
        let shared = callback.clone();
        self.connection
            .set_metric_callback(move |info| shared(info));
        self.observer = StatementObserver(Some(callback));
    }

    pub(crate) fn observer(&self) -> &StatementObserver {
        &self.observer
    }

    /// The sqlx pool underneath, for work that bypasses SeaORM (and so this pool's care).
    pub fn get_postgres_connection_pool(&self) -> &sea_orm::sqlx::PgPool {
        self.connection.get_postgres_connection_pool()
    }

    /// Behind PgBouncer: clears prepared statements that other clients left on the server this
    /// transaction runs on, and takes every schema of ours off its search path (one round trip).
    async fn started(&self, txn: DatabaseTransaction) -> Result<DatabaseTransaction, DbErr> {
        if self.behind_pgbouncer() {
            txn.execute_unprepared("DEALLOCATE ALL; SET LOCAL search_path = pg_catalog")
                .await?;
        }
        Ok(txn)
    }
}

/// `$pool`'s `$call` (on `$conn`): behind PgBouncer in a transaction of its own, committed
/// before it returns; straight to PostgreSQL on the pool itself.
macro_rules! one_statement {
    ($pool:expr, |$conn:ident| $call:expr) => {{
        if $pool.behind_pgbouncer() {
            let $conn = $pool.begin().await?;
            let result = $call.await;
            finish($conn, result).await
        } else {
            let $conn = &$pool.connection;
            $call.await
        }
    }};
}

#[async_trait::async_trait]
impl ConnectionTrait for Pool {
    fn get_database_backend(&self) -> DbBackend {
        self.connection.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        one_statement!(self, |conn| conn.execute_raw(stmt))
    }

    /// One simple query needs no pinning, but behind PgBouncer it gets a transaction for the
    /// search path all the same.
    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        one_statement!(self, |conn| conn.execute_unprepared(sql))
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        one_statement!(self, |conn| conn.query_one_raw(stmt))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        one_statement!(self, |conn| conn.query_all_raw(stmt))
    }

    fn support_returning(&self) -> bool {
        self.connection.support_returning()
    }
}

#[async_trait::async_trait]
impl TransactionTrait for Pool {
    type Transaction = DatabaseTransaction;

    async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.started(self.connection.begin().await?).await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<DatabaseTransaction, DbErr> {
        let txn = self
            .connection
            .begin_with_config(isolation_level, access_mode)
            .await?;
        self.started(txn).await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<DatabaseTransaction, DbErr> {
        self.started(self.connection.begin_with_options(options).await?)
            .await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self.begin().await.map_err(TransactionError::Connection)?;
        run_in(txn, callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(
                &'c DatabaseTransaction,
            ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
            + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        let txn = self
            .begin_with_config(isolation_level, access_mode)
            .await
            .map_err(TransactionError::Connection)?;
        run_in(txn, callback).await
    }
}

/// Commits `txn` after its one statement succeeded, rolls it back after it failed.
async fn finish<T>(txn: DatabaseTransaction, result: Result<T, DbErr>) -> Result<T, DbErr> {
    match result {
        Ok(value) => {
            txn.commit().await?;
            Ok(value)
        }
        Err(err) => {
            // The statement's error is the one to report; a rollback that fails ends the
            // transaction anyway, with its connection.
            let _ = txn.rollback().await;
            Err(err)
        }
    }
}

/// Runs `callback` in `txn`: committed when it succeeds, rolled back when it fails.
async fn run_in<F, T, E>(txn: DatabaseTransaction, callback: F) -> Result<T, TransactionError<E>>
where
    F: for<'c> FnOnce(
            &'c DatabaseTransaction,
        ) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
        + Send,
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    match callback(&txn).await {
        Ok(value) => {
            txn.commit().await.map_err(TransactionError::Connection)?;
            Ok(value)
        }
        Err(err) => {
            txn.rollback().await.map_err(TransactionError::Connection)?;
            Err(TransactionError::Transaction(err))
        }
    }
}

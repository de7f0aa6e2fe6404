//! Connections of their own for gated reads ([`super::pinned::read_as_owner`]), handed back to
//! their pool without a check.
//!
//! sqlx's pool sends a `Sync` and waits for PostgreSQL's answer every time it takes a
//! connection back, from a task of its own: on a read path of one statement per request that
//! is one more wake-up of the backend and of the server per request. A gated read is one
//! statement outside any transaction, so once it has been answered the connection is known to
//! be idle, and one given up half-way (the request was cancelled, or the connection failed) is
//! closed instead of reused. Their statement caches hold the tenants' reads only: the
//! transactions' statements do not push them out.
//!
//! Straight to PostgreSQL only: behind PgBouncer a gated read takes the pool's way.

use std::time::Duration;

use deadpool::{
    Runtime,
    managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult},
};
use sea_orm::{
    ConnAcquireErr, DbErr, QueryResult, Statement,
    sqlx::{self, ConnectOptions, Connection, PgConnection, PgPool, postgres::PgConnectOptions},
};

use super::{CONNECTION_LIFETIME, IDLE_TIMEOUT, PING_IF_IDLE_FOR, pinned};

/// Up to as many connections as the pool they are made for, opened when needed, each closed
/// after the same lifetime as the pool's (why: see `CONNECTION_LIFETIME` in `db`) or after as
/// long unused as the pool's idle ones.
#[derive(Clone)]
pub struct ReadConnections {
    pool: managed::Pool<Connector>,
}

impl std::fmt::Debug for ReadConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadConnections")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl ReadConnections {
    /// Connections made like `pool`'s, as many at most, waited for as long.
    pub(crate) fn like(pool: &PgPool) -> Self {
        let options = pool.options();
        let wait = Some(options.get_acquire_timeout());
        let connector = Connector {
            options: pool.connect_options().as_ref().clone(),
        };
        let pool = managed::Pool::builder(connector)
            .max_size(options.get_max_connections() as usize)
            .wait_timeout(wait)
            .create_timeout(wait)
            .runtime(Runtime::Tokio1)
            .build()
            .expect("a runtime and a size are given");
        let weak = pool.weak();
        tokio::spawn(async move {
            let mut sweeps = tokio::time::interval(SWEEP_EVERY);
            loop {
                sweeps.tick().await;
                let Some(pool) = weak.upgrade() else { break };
                close_all(pool.retain(|_, used| !worn_out(&used)).removed).await;
            }
        });
        ReadConnections { pool }
    }

    /// Runs `statement` (one statement, outside any transaction) and returns its rows.
    pub async fn query_all(&self, statement: &Statement) -> Result<Vec<QueryResult>, DbErr> {
        let connection = self.pool.get().await.map_err(acquire_error)?;
        let mut in_flight = InFlight(Some(connection));
        let connection = in_flight.0.as_mut().expect("held until answered");
        let answer = pinned::sqlx_query(statement)
            .fetch_all(&mut **connection)
            .await;
        match answer {
            Ok(rows) => {
                in_flight.answered();
                Ok(rows.into_iter().map(Into::into).collect())
            }
            // PostgreSQL refused the statement and stays in step: the connection waits for the
            // rest of the answer before its next statement.
            Err(err @ sqlx::Error::Database(_)) => {
                in_flight.answered();
                Err(pinned::sqlx_error_to_query_err(err))
            }
            // Anything else (the connection broke, the answer could not be read) closes it.
            Err(err) => Err(pinned::sqlx_error_to_query_err(err)),
        }
    }

    /// Closes every idle connection, and the rest as they come back; further reads fail.
    pub(crate) async fn close(&self) {
        let idle = self.pool.retain(|_, _| false).removed;
        self.pool.close();
        close_all(idle).await;
    }
}

async fn close_all(connections: Vec<PgConnection>) {
    for connection in connections {
        // Closing says goodbye to PostgreSQL; a connection that cannot is gone anyway.
        connection.close().await.ok();
    }
}

/// How often connections worn out while idle are closed.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

fn worn_out(used: &Metrics) -> bool {
    used.age() >= CONNECTION_LIFETIME || used.last_used() >= IDLE_TIMEOUT
}

struct Connector {
    options: PgConnectOptions,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        self.options.connect().await
    }

    /// Before a connection is handed out: renewed when worn out, and pinged (as the pool's own
    /// connections are) when it sat idle long enough for PostgreSQL to have dropped it.
    async fn recycle(
        &self,
        connection: &mut PgConnection,
        used: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if worn_out(used) {
            return Err(RecycleError::message("worn out"));
        }
        if used.last_used() >= PING_IF_IDLE_FOR {
            connection.ping().await?;
        }
        Ok(())
    }
}

/// A connection between sending a statement and reading all of its answer. Dropped before
/// [`answered`](Self::answered), the connection's state is unknown: it is taken out of the
/// pool and closed.
struct InFlight(Option<Object<Connector>>);

impl InFlight {
    fn answered(mut self) {
        self.0.take();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(Object::take(connection));
        }
    }
}

fn acquire_error(err: PoolError<sqlx::Error>) -> DbErr {
    match err {
        PoolError::Timeout(_) => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        PoolError::Backend(err) => pinned::sqlx_error_to_conn_err(err),
        PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)
        }
    }
}

//! Which PostgreSQL server a tenant's schema lives on, and one pool for each.
//!
//! The control database (`DATABASE_URL`, or the embedded one) holds the registry and is itself
//! the server named [`CONTROL_SERVER`]. Every other server is a row of `database_servers`; its
//! pool is opened on first use, lazily (a server that is down costs nothing until a tenant of
//! it is asked for), and sized so that all pools together stay within
//! `DATABASE_TOTAL_MAX_CONNECTIONS`.
//!
//! A data server holds a mirror of the registry's ownership facts, `public.tenant_placements`
//! ([`PLACEMENTS_DDL`]): the pin of [`super::pinned::begin_as_owner`] reads it there instead of
//! `public.tenants`, so the ownership check stays in the pinned statement itself.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use entity::public::database_servers;
use sea_orm::{Database, DbErr, EntityTrait, RuntimeErr};

use crate::{
    config::{Config, DatabasePooler, connections_of_pool},
    db::pool::{OwnershipTable, Pool},
    error::{AppError, AppResult, code_of},
};

/// The name of the control database as a server.
pub const CONTROL_SERVER: &str = "control";

/// The registry mirror every data server holds: what the pin of a tenant there checks. Written
/// by the control plane before anything that must fence (deactivation, deletion) and with the
/// schema on creation.
pub const PLACEMENTS_DDL: &str = "CREATE TABLE IF NOT EXISTS public.tenant_placements (\
     id uuid PRIMARY KEY, \
     schema_name text NOT NULL UNIQUE, \
     status text NOT NULL, \
     updated_at timestamptz NOT NULL DEFAULT now())";

/// How long a server that could not be reached is answered as down without trying it again,
/// so that its tenants' requests fail at once instead of each waiting for a connection.
const UNREACHABLE_FOR: Duration = Duration::from_secs(2);

/// How long a request waits for a connection to a data server.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The pools of every server, the control database's first.
pub struct DbServers {
    control: Pool,
    opened: Mutex<Opened>,
    per_server: u32,
}

struct Opened {
    pools: HashMap<String, Pool>,
    /// Connections still free under the global cap.
    budget: u32,
    unreachable_until: HashMap<String, Instant>,
}

impl DbServers {
    pub fn new(config: &Config, control: Pool) -> Self {
        DbServers {
            control,
            opened: Mutex::new(Opened {
                pools: HashMap::new(),
                budget: config
                    .database_total_max_connections
                    .saturating_sub(connections_of_pool(config.database_max_connections)),
                unreachable_until: HashMap::new(),
            }),
            per_server: config.database_server_max_connections,
        }
    }

    /// The control database's pool (the registry's).
    pub fn control(&self) -> &Pool {
        &self.control
    }

    /// The pool of the server named `server` (`None` or [`CONTROL_SERVER`]: the control
    /// database). `SERVER_UNAVAILABLE` while the server is known to be unreachable, or when the
    /// connection cap leaves nothing for it.
    pub async fn pool(&self, server: Option<&str>) -> AppResult<Pool> {
        let Some(name) = server.filter(|name| *name != CONTROL_SERVER) else {
            return Ok(self.control.clone());
        };
        if self.is_unreachable(name) {
            return Err(unavailable());
        }
        if let Some(pool) = self.lock().pools.get(name) {
            return Ok(pool.clone());
        }
        let row = database_servers::Entity::find_by_id(name.to_owned())
            .one(&self.control)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown database server")))?;
        let size = self
            .per_server
            .min(self.lock().budget / connections_of_pool(1));
        if size == 0 {
            tracing::warn!(
                server = name,
                "no connections left under DATABASE_TOTAL_MAX_CONNECTIONS for this server"
            );
            return Err(unavailable());
        }
        let pool = open_lazily(&row.url, size)
            .await
            .map_err(AppError::internal)?
            .observed_like(&self.control);
        let mut opened = self.lock();
        // Another request opened it meanwhile: the new pool, which never connected, goes.
        if let Some(pool) = opened.pools.get(name) {
            return Ok(pool.clone());
        }
        let connections = connections_of_pool(size);
        if opened.budget < connections {
            return Err(unavailable());
        }
        opened.budget -= connections;
        opened.pools.insert(name.to_owned(), pool.clone());
        Ok(pool)
    }

    /// Whether `server` failed to answer a moment ago (see [`Self::failed`]).
    pub fn is_unreachable(&self, server: &str) -> bool {
        self.lock()
            .unreachable_until
            .get(server)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// The pools opened so far, by server name (the control database's not among them).
    pub fn opened(&self) -> Vec<(String, Pool)> {
        let mut pools: Vec<_> = self
            .lock()
            .pools
            .iter()
            .map(|(name, pool)| (name.clone(), pool.clone()))
            .collect();
        pools.sort_by(|a, b| a.0.cmp(&b.0));
        pools
    }

    /// Turns a failure to reach `server` into `SERVER_UNAVAILABLE`, and answers its tenants so
    /// for a moment without trying again; other errors pass as they are.
    pub fn failed(&self, server: Option<&str>, err: impl Into<AppError>) -> AppError {
        let err = err.into();
        match server.filter(|name| *name != CONTROL_SERVER) {
            Some(name) if is_unreachable(&err) => {
                tracing::warn!(server = name, error = ?err, "database server unreachable");
                self.lock()
                    .unreachable_until
                    .insert(name.to_owned(), Instant::now() + UNREACHABLE_FOR);
                unavailable()
            }
            _ => err,
        }
    }

    /// Closes every pool but the control database's.
    pub async fn close(&self) {
        let pools: Vec<Pool> = self.lock().pools.drain().map(|(_, pool)| pool).collect();
        for pool in pools {
            let _ = pool.close().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Opened> {
        self.opened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn unavailable() -> AppError {
    AppError::ServerUnavailable("the database server of this tenant is not reachable".into())
}

/// A lost or refused connection (also one that broke under a statement), a pool that could not
/// get one in time, or a server shutting down (SQLSTATE class 08, 57P01 to 57P03).
fn is_unreachable(err: &AppError) -> bool {
    let AppError::Internal(err) = err else {
        return false;
    };
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<DbErr>())
        .any(|err| {
            matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
                || matches!(
                    err,
                    DbErr::Exec(RuntimeErr::SqlxError(cause)) | DbErr::Query(RuntimeErr::SqlxError(cause))
                        if matches!(**cause, sea_orm::sqlx::Error::Io(_))
                )
                || code_of(err)
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0"))
        })
}

/// A pool on a data server that connects on first use. Data servers are reached straight (no
/// PgBouncer): the pin's statements need a session of their own for the transaction only, and
/// nothing here is session state.
async fn open_lazily(url: &str, size: u32) -> anyhow::Result<Pool> {
    // As the control database's pool, but connecting on first use and giving up sooner.
    let mut options = super::straight_pool_options(url, size);
    options
        .connect_timeout(ACQUIRE_TIMEOUT)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_lazy(true);
    let connection = Database::connect(options)
        .await
        .map_err(|err| anyhow::Error::new(err).context("could not set up a server's pool"))?;
    Ok(Pool::new(connection, DatabasePooler::None)
        .with_read_connections(url)
        .owned_through(OwnershipTable::Placements))
}

//! The lock that says "a live server runs this batch": a session advisory lock held on a
//! connection of its own, which PostgreSQL releases the moment that server's process dies.
//!
//! A session lock needs a session: behind PgBouncer in transaction mode the connection is
//! `DATABASE_DIRECT_URL` (PostgreSQL itself, or a session-mode pool), because a lock taken
//! through a transaction pooler would stay on a server connection that other clients go on
//! using, and closing our client connection would not release it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::sqlx::{self, ConnectOptions, Connection, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};
use uuid::Uuid;

use crate::{
    primitives::locks::{self, Take},
    state::AppState,
};

pub struct BatchLock {
    connection: PgConnection,
    key: String,
}

/// How often a held lock's connection is checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A lock held by a running batch ([`BatchLock::hold`]).
pub struct HeldLock {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl HeldLock {
    /// Releases the lock.
    pub async fn release(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// `SELECT` of the lock function; built from constant parts only, the key is bound as `$1`.
fn statement(how: Take) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!("SELECT {}", locks::take(how, 1)))
}

impl BatchLock {
    /// Takes the batch's lock only if nobody holds it: `None` means a live server runs it.
    pub async fn try_acquire(
        state: &AppState,
        batch_id: Uuid,
    ) -> Result<Option<Self>, sqlx::Error> {
        let mut lock = Self::connect(state, batch_id).await?;
        let (taken,): (bool,) = sqlx::query_as(statement(Take::TrySession))
            .bind(&lock.key)
            .fetch_one(&mut lock.connection)
            .await?;
        Ok(taken.then_some(lock))
    }

    /// Releases the lock; dropping the lock without this also releases it, with the connection.
    pub async fn release(self) {
        let _ = self.connection.close().await;
    }

    /// Holds the lock while a batch runs, checking its connection every second: a lock whose
    /// connection broke is free for another server to take, so `lost` is set and the run must
    /// start nothing more.
    pub fn hold(self, lost: Arc<AtomicBool>) -> HeldLock {
        let (stop, mut stopped) = oneshot::channel();
        let mut lock = self;
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(CHECK_INTERVAL) => {}
                }
                if sqlx::query("SELECT 1")
                    .execute(&mut lock.connection)
                    .await
                    .is_err()
                {
                    tracing::error!(key = %lock.key, "lost the connection holding a batch's lock; another server may take the batch over");
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
            lock.release().await;
        });
        HeldLock { stop, task }
    }

    async fn connect(state: &AppState, batch_id: Uuid) -> Result<Self, sqlx::Error> {
        let options = crate::db::session_connect_options(&state.config, &state.db)?
            .disable_statement_logging();
        let connection = PgConnection::connect_with(&options).await?;
        Ok(BatchLock {
            connection,
            key: locks::batch_key(batch_id),
        })
    }
}

//! Access events: changes that end or narrow someone's access, announced on one PostgreSQL
//! notification channel so that every server of a deployment evicts what it cached.
//!
//! A change is published inside the transaction that makes it (`pg_notify` is delivered on
//! commit, never for a rollback): by triggers for the registry tables (`tenants`,
//! `platform_users`, `sessions`), by [`publish`] for what lives in tenant schemas. Each server
//! listens on its own connection and hands what it hears to its caches and, through
//! [`AccessFeed::subscribe`], to whatever else holds access open (such as WebSockets).

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

/// The one channel of access events (also named by the triggers of the public migrations).
pub const ACCESS_CHANNEL: &str = "tenantgraph_access";

/// The channel on which a batch's new progress events are announced (the payload is the batch
/// id); subscribers on every server then read them from `provisioning_events`.
pub const BATCH_EVENTS_CHANNEL: &str = "tenantgraph_batch_events";

/// Something that ended or narrowed access. The JSON form (`{"kind":"session","id":…}`) is
/// what travels on [`ACCESS_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AccessEvent {
    /// A session ended: logout, revocation, or a refresh token presented twice.
    Session {
        id: Uuid,
        /// The tenant of a tenant user's session; absent for a platform operator's.
        #[serde(default)]
        tenant: Option<Uuid>,
        user: Uuid,
    },
    /// A tenant user's status, password or roles changed.
    User { tenant: Uuid, id: Uuid },
    /// A tenant's registry entry changed (status, deletion, schema, API key, settings) or the
    /// tenant is gone.
    Tenant { id: Uuid },
    /// A platform operator was deactivated or deleted, or their password changed.
    Operator { id: Uuid },
    /// Events may have been missed (the listener lost its connection): anything may have
    /// changed. Never sent on the channel.
    #[serde(skip)]
    Everything,
}

/// Publishes `event` on [`ACCESS_CHANNEL`] as part of the transaction `conn` runs in: other
/// servers hear of it when (and only if) that transaction commits.
pub async fn publish(conn: &impl ConnectionTrait, event: &AccessEvent) -> Result<(), DbErr> {
    let payload = serde_json::to_string(event)
        .map_err(|err| DbErr::Custom(format!("an access event is not JSON: {err}")))?;
    conn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [ACCESS_CHANNEL.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

/// Events a subscriber may fall behind by before it is told it lagged (and should treat that
/// as [`AccessEvent::Everything`]).
const FEED_CAPACITY: usize = 1024;

/// What the caches of access state share within one server.
///
/// - Whether the listener is connected: while it is not, events may be missed, so the caches
///   are bypassed (every request reads the database) until it is back.
/// - An eviction counter: a value loaded from the database is cached only if no eviction
///   happened while it was loaded, so a load racing a change never caches the old state.
/// - The in-process fan-out of every event, heard or made here.
pub struct AccessFeed {
    listening: AtomicBool,
    evictions: AtomicU64,
    sender: broadcast::Sender<AccessEvent>,
}

impl AccessFeed {
    pub fn new() -> Arc<Self> {
        Arc::new(AccessFeed {
            listening: AtomicBool::new(false),
            evictions: AtomicU64::new(0),
            sender: broadcast::channel(FEED_CAPACITY).0,
        })
    }

    /// Whether caches may be used: the listener is connected, so no change goes unheard.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Records that the listener connected or lost its connection.
    pub fn set_listening(&self, listening: bool) {
        self.evictions.fetch_add(1, Ordering::SeqCst);
        self.listening.store(listening, Ordering::SeqCst);
    }

    /// A mark to take before loading a value that may be cached.
    pub fn mark(&self) -> u64 {
        self.evictions.load(Ordering::SeqCst)
    }

    /// Whether a value loaded after `mark` may be (or stay) cached: the listener is connected
    /// and nothing was evicted since.
    pub fn still_fresh(&self, mark: u64) -> bool {
        self.is_listening() && self.mark() == mark
    }

    /// Counts an eviction; call before evicting, so that a load finishing in between sees it.
    pub fn evicting(&self) {
        self.evictions.fetch_add(1, Ordering::SeqCst);
    }

    /// Hands `event` to every subscriber of this server.
    pub fn broadcast(&self, event: AccessEvent) {
        // No subscriber is fine.
        let _ = self.sender.send(event);
    }

    /// Every event from now on, heard from other servers or made here. A subscriber that falls
    /// more than 1,024 events behind gets `RecvError::Lagged`: treat it as
    /// [`AccessEvent::Everything`].
    pub fn subscribe(&self) -> broadcast::Receiver<AccessEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_travel_as_small_json_objects_with_a_kind() {
        let id = Uuid::nil();
        let user = AccessEvent::User { tenant: id, id };
        let json = serde_json::to_string(&user).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"kind":"user","tenant":"{id}","id":"{id}"}}"#)
        );
        assert_eq!(serde_json::from_str::<AccessEvent>(&json).unwrap(), user);
        // What the session trigger sends for a platform session (tenant null).
        let from_trigger =
            format!(r#"{{"kind":"session","id":"{id}","tenant":null,"user":"{id}"}}"#);
        assert_eq!(
            serde_json::from_str::<AccessEvent>(&from_trigger).unwrap(),
            AccessEvent::Session {
                id,
                tenant: None,
                user: id
            }
        );
        assert!(serde_json::to_string(&AccessEvent::Everything).is_err());
    }

    #[test]
    fn a_load_that_raced_an_eviction_is_not_cached() {
        let feed = AccessFeed::new();
        let mark = feed.mark();
        assert!(
            !feed.still_fresh(mark),
            "nothing is cached without a listener"
        );
        feed.set_listening(true);
        let mark = feed.mark();
        assert!(feed.still_fresh(mark));
        feed.evicting();
        assert!(!feed.still_fresh(mark));
    }
}

//! Every request is held against current state: its session live, its user `active` with the
//! password the session began with, its roles as they are now, its tenant `ACTIVE` and still
//! the owner of its schema.
//!
//! The state of a tenant user's session is cached per server for at most
//! [`ENTRY_TTL`] and evicted by the change itself: here at once by whoever made it
//! ([`announce`]), on the other servers by the notification it published (see
//! [`crate::auth::listener`]). The tenant side comes from the registry cache
//! ([`crate::tenancy::directory`]), evicted the same way. A platform operator's session is read
//! on every request (one indexed query, as the operator check always was), so that even a change
//! made by hand in SQL counts at once.
//!
//! For things that hold access open (WebSockets): [`Access::subscribe`] yields every
//! [`AccessEvent`], and [`crate::auth::Principal::is_affected_by`] says whether one concerns a
//! principal, which [`crate::auth::reauthenticate`] then checks again the way HTTP does.

use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    auth::sessions::session_state_on,
    db::notify::{AccessEvent, AccessFeed},
    error::AppResult,
    primitives::debounce::Debounce,
    state::AppState,
    tenancy::directory::{ENTRY_TTL, TenantEntry, cached},
};

/// `last_used_at` is written at most this often per session, off the request path.
const LAST_USED_DEBOUNCE: Duration = Duration::from_secs(60);

/// A tenant user's session as last read.
#[derive(Debug)]
struct CachedSession {
    tenant: Uuid,
    user: Uuid,
    /// `None` when the session may not be used (ended, user not active, password changed).
    current: Option<CurrentUser>,
}

/// The holder of a usable tenant session, as they are now.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
}

/// The session-state cache of one server and its share of the access feed.
pub struct Access {
    feed: Arc<AccessFeed>,
    sessions: Cache<Uuid, Arc<CachedSession>>,
    recently_used: Debounce,
}

impl Access {
    pub fn new(feed: Arc<AccessFeed>) -> Self {
        Access {
            feed,
            sessions: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ENTRY_TTL)
                .support_invalidation_closures()
                .build(),
            recently_used: Debounce::new(LAST_USED_DEBOUNCE),
        }
    }

    pub fn feed(&self) -> &Arc<AccessFeed> {
        &self.feed
    }

    /// Every access event from now on: made on this server, or heard from the others. After
    /// [`AccessEvent::Everything`] (or a `Lagged` error) re-check every principal.
    pub fn subscribe(&self) -> broadcast::Receiver<AccessEvent> {
        self.feed.subscribe()
    }

    /// Evicts the sessions `event` concerns.
    async fn apply(&self, event: &AccessEvent) {
        self.feed.evicting();
        let predicate: Box<dyn Fn(&CachedSession) -> bool + Send + Sync> = match *event {
            AccessEvent::Session { id, .. } => {
                self.sessions.invalidate(&id).await;
                return;
            }
            AccessEvent::Everything => {
                self.sessions.invalidate_all();
                return;
            }
            // Platform sessions are not cached.
            AccessEvent::Operator { .. } => return,
            AccessEvent::User { tenant, id } => {
                Box::new(move |session| session.tenant == tenant && session.user == id)
            }
            AccessEvent::Tenant { id } => Box::new(move |session| session.tenant == id),
        };
        if self
            .sessions
            .invalidate_entries_if(move |_, session| predicate(session))
            .is_err()
        {
            self.sessions.invalidate_all();
        }
    }
}

/// Makes `event` count on this server at once: evicts what it makes stale and tells this
/// server's subscribers. Call it after the change committed (other servers hear of it through
/// the notification the change published).
pub async fn announce(state: &AppState, event: AccessEvent) {
    state.access.apply(&event).await;
    state.directory.apply(&event).await;
    state.access.feed.broadcast(event);
}

/// The holder of session `session_id` of `tenant` as they are now, if the session may be used
/// by `user_id`. Cached; a miss costs one statement.
pub async fn current_tenant_user(
    state: &AppState,
    tenant: &TenantEntry,
    session_id: Uuid,
    user_id: Uuid,
) -> AppResult<Option<CurrentUser>> {
    let session = cached(
        &state.access.feed,
        &state.access.sessions,
        session_id,
        async {
            let read = session_state_on(
                state,
                &state.db,
                tenant.server.as_deref(),
                &tenant.schema,
                session_id,
                tenant.id,
            )
            .await?;
            Ok(Arc::new(CachedSession {
                tenant: tenant.id,
                user: read.as_ref().map_or(user_id, |read| read.user_id),
                current: read.filter(|read| read.usable).map(|read| CurrentUser {
                    id: read.user_id,
                    email: read.email,
                    roles: read.roles,
                }),
            }))
        },
    )
    .await?;
    let current = session
        .current
        .clone()
        .filter(|current| session.tenant == tenant.id && current.id == user_id);
    if current.is_some() {
        touch(state, session_id).await;
    }
    Ok(current)
}

/// Notes that a session was used; the first note in a debounce window writes `last_used_at`.
pub async fn touch(state: &AppState, session_id: Uuid) {
    if !state.access.recently_used.first_note(session_id).await {
        return;
    }
    let db = state.db.clone();
    tokio::spawn(async move {
        let written = db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE public.sessions SET last_used_at = now() \
                  WHERE id = $1 AND last_used_at < now()",
                [session_id.into()],
            ))
            .await;
        if let Err(err) = written {
            tracing::warn!(session = %session_id, error = %err, "could not record session use");
        }
    });
}

//! Each server's ear on the access channel: a connection of its own (not one of the pool's)
//! `LISTEN`s on [`ACCESS_CHANNEL`] and evicts, on this server, what every change heard there
//! makes stale. The same connection hears, on the batch events channel, that batches run by
//! other servers have new progress events, for this server's subscribers, and on the webhooks
//! channel that deliveries were queued, for this server's webhook sender.
//!
//! Notifications sent while a connection is down are lost for good, so losing the connection
//! drops every cached access state and turns the caches off ([`AccessFeed::set_listening`]):
//! until the listener is back, every request reads the database. It reconnects with backoff.

use std::time::Duration;

use sea_orm::sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    auth::access::announce,
    db::notify::{ACCESS_CHANNEL, AccessEvent, AccessFeed, BATCH_EVENTS_CHANNEL},
    state::SharedState,
    webhooks::outbox::WEBHOOKS_CHANNEL,
};

/// The listener's `application_name`, to tell its connection apart in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "tenantgraph-access-listener";

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The running listener; dropping it stops it too (abruptly).
pub struct ListenerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ListenerHandle {
    /// Stops listening and closes the listener's connection.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts listening for access events on behalf of `state`.
pub fn spawn(state: SharedState) -> ListenerHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(listen(state, stopped));
    ListenerHandle { stop, task }
}

async fn listen(state: SharedState, mut stopped: watch::Receiver<bool>) {
    let feed = state.access.feed().clone();
    let mut retry = FIRST_RETRY;
    loop {
        let connected = tokio::select! {
            connected = connect(&state) => connected,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match connected {
            Ok((mut listener, pool)) => {
                // Nothing was cached while away; from here on no change goes unheard.
                feed.set_listening(true);
                retry = FIRST_RETRY;
                tracing::info!(channel = ACCESS_CHANNEL, "listening for access events");
                let stopping = loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        _ = stopped.wait_for(|stop| *stop) => break true,
                    };
                    match received {
                        Ok(Some(notification))
                            if notification.channel() == BATCH_EVENTS_CHANNEL =>
                        {
                            state.events.heard(notification.payload());
                        }
                        Ok(Some(notification)) if notification.channel() == WEBHOOKS_CHANNEL => {
                            state.webhooks.wake();
                        }
                        Ok(Some(notification)) => hear(&state, notification.payload()).await,
                        Ok(None) => {
                            tracing::warn!("the access listener lost its connection");
                            break false;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "the access listener failed");
                            break false;
                        }
                    }
                };
                lose(&state, &feed).await;
                drop(listener);
                // A connection that went away may not say goodbye: do not wait for it long.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, pool.close()).await;
                if stopping {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_ms = retry.as_millis() as u64, "the access listener cannot connect");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// A connection of its own (not through a transaction-mode pooler), listening on the channel.
async fn connect(state: &SharedState) -> Result<(PgListener, PgPool), sea_orm::sqlx::Error> {
    let options = crate::db::session_connect_options(&state.config, &state.db)?
        .application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.ignore_pool_close_event(true);
    listener.eager_reconnect(false);
    // Progress events of batches run by other servers, and new webhook deliveries, share the
    // connection.
    listener
        .listen_all([ACCESS_CHANNEL, BATCH_EVENTS_CHANNEL, WEBHOOKS_CHANNEL])
        .await?;
    Ok((listener, pool))
}

/// Applies one notification. A payload this server does not understand (a newer server's
/// event, say) could mean anything: everything cached goes.
async fn hear(state: &SharedState, payload: &str) {
    let event = match serde_json::from_str::<AccessEvent>(payload) {
        Ok(event) => event,
        Err(err) => {
            tracing::warn!(error = %err, payload, "an access event not understood; dropping every cached access state");
            AccessEvent::Everything
        }
    };
    tracing::debug!(?event, "access event");
    announce(state, event).await;
}

/// The connection is gone: events may be missed from now on, so the caches are turned off and
/// emptied, and subscribers are told that anything may have changed.
async fn lose(state: &SharedState, feed: &AccessFeed) {
    feed.set_listening(false);
    announce(state, AccessEvent::Everything).await;
}

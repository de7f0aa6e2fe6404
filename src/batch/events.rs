//! Progress events of batches: kept in memory while a batch runs (so a subscriber that arrives
//! late replays everything), broadcast live through bounded channels, and written to
//! `provisioning_events` in the background for history.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::public::provisioning_events;
use sea_orm::{ActiveValue::Set, EntityTrait};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::tenancy::{Step, StepStatus};

/// Live events a subscriber may fall behind by before it is re-synchronised from the log.
const LIVE_BUFFER: usize = 256;
/// How long a finished batch's log stays in memory for late subscribers (then the database).
const KEEP_FINISHED: Duration = Duration::from_secs(300);

/// One step of one tenant, or (with no tenant) the end of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    pub batch_id: Uuid,
    /// Position in the batch's event log, from 0.
    pub seq: i32,
    pub tenant_name: Option<String>,
    pub schema_name: Option<String>,
    pub step: Step,
    pub status: StepStatus,
    pub message: Option<String>,
    /// Tenants finished so far: assigned by [`EventHub::publish`] with `seq`, so it never
    /// decreases along the log.
    pub completed: i32,
    pub total: i32,
    pub at: DateTime<Utc>,
}

impl ProgressEvent {
    /// The last event of a batch.
    pub fn ends_batch(&self) -> bool {
        self.tenant_name.is_none() && self.step == Step::Done
    }

    /// The last event of one tenant: it counts towards `completed`.
    fn ends_tenant(&self) -> bool {
        self.tenant_name.is_some() && self.step == Step::Done
    }
}

struct BatchLog {
    events: Vec<ProgressEvent>,
    /// Tenants whose last event is in `events`.
    completed: i32,
    live: broadcast::Sender<ProgressEvent>,
}

/// What a new subscriber gets: everything so far, then the live feed.
pub struct Subscription {
    pub past: Vec<ProgressEvent>,
    pub live: broadcast::Receiver<ProgressEvent>,
}

#[derive(Clone)]
pub struct EventHub {
    logs: Arc<Mutex<HashMap<Uuid, BatchLog>>>,
    persist: mpsc::UnboundedSender<ProgressEvent>,
}

impl EventHub {
    /// A hub whose events are written to `db` by a background task.
    pub fn new(db: crate::db::Pool) -> Self {
        let (persist, pending) = mpsc::unbounded_channel();
        tokio::spawn(write_events(db, pending));
        EventHub {
            logs: Arc::default(),
            persist,
        }
    }

    /// Publishes an event: the next `seq` of its batch and the tenants `completed` so far are
    /// assigned here, together, so `completed` never goes back in `seq` order. A tenant's `DONE`
    /// counts; the batch's last event may carry a larger count (its total) and keeps it.
    pub fn publish(&self, mut event: ProgressEvent) -> ProgressEvent {
        let mut logs = self.logs.lock().expect("event hub poisoned");
        let log = logs.entry(event.batch_id).or_insert_with(|| BatchLog {
            events: Vec::new(),
            completed: 0,
            live: broadcast::channel(LIVE_BUFFER).0,
        });
        event.seq = log.events.len() as i32;
        if event.ends_tenant() {
            log.completed += 1;
        }
        log.completed = log.completed.max(event.completed);
        event.completed = log.completed;
        log.events.push(event.clone());
        // No receivers is fine: nobody is watching yet.
        let _ = log.live.send(event.clone());
        let _ = self.persist.send(event.clone());
        if event.ends_batch() {
            let logs = self.logs.clone();
            let batch_id = event.batch_id;
            tokio::spawn(async move {
                tokio::time::sleep(KEEP_FINISHED).await;
                logs.lock().expect("event hub poisoned").remove(&batch_id);
            });
        }
        event
    }

    /// Everything published for the batch so far and the live feed, atomically: nothing falls
    /// between the two. `None` when the batch is not in memory (finished long ago, or run by
    /// another server).
    pub fn subscribe(&self, batch_id: Uuid) -> Option<Subscription> {
        let logs = self.logs.lock().expect("event hub poisoned");
        logs.get(&batch_id).map(|log| Subscription {
            past: log.events.clone(),
            live: log.live.subscribe(),
        })
    }

    /// The batch's events from `seq` on, for a subscriber that fell behind.
    pub fn since(&self, batch_id: Uuid, seq: i32) -> Vec<ProgressEvent> {
        let logs = self.logs.lock().expect("event hub poisoned");
        logs.get(&batch_id)
            .map(|log| {
                log.events
                    .iter()
                    .skip(seq.max(0) as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Writes events in bulk, as they come, so that publishing never waits for the database.
async fn write_events(db: crate::db::Pool, mut pending: mpsc::UnboundedReceiver<ProgressEvent>) {
    let mut buffer = Vec::new();
    while pending.recv_many(&mut buffer, 500).await > 0 {
        let rows = buffer
            .drain(..)
            .map(|event| provisioning_events::ActiveModel {
                batch_id: Set(event.batch_id),
                seq: Set(event.seq),
                tenant_name: Set(event.tenant_name),
                schema_name: Set(event.schema_name),
                step: Set(event.step),
                status: Set(event.status),
                message: Set(event.message),
                completed: Set(event.completed),
                total: Set(event.total),
                at: Set(event.at.fixed_offset()),
            });
        if let Err(err) = provisioning_events::Entity::insert_many(rows)
            .exec_without_returning(&db)
            .await
        {
            tracing::warn!(error = %err, "could not record provisioning events");
        }
    }
}

//! Progress events of batches: persisted first (`provisioning_events`), then announced, on this
//! server at once and on every other one through `LISTEN/NOTIFY` on
//! [`BATCH_EVENTS_CHANNEL`]. Subscribers read the table in `seq` order, so a subscriber on any
//! server sees every event of a batch exactly once, whichever server runs (or took over) it.
//!
//! Only the server holding a batch's lock publishes its events, so `seq` is assigned here, in
//! memory, continuing from what is stored when a server takes a batch over. One writer task
//! stores events in the order they were published, so what is stored never has a gap. The
//! batch's own records (a job started, an attempt, a job's or the batch's end) go through the
//! same writer ([`EventHub::store_with`]): each commits with the events published before it, and
//! the changes of every tenant running at once share the round trip of one bulk.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::public::provisioning_events;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{OnConflict, PostgresQueryBuilder, QueryBuilder},
};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

pub use crate::db::notify::BATCH_EVENTS_CHANNEL;
use crate::{
    db::pinned::run_script,
    tenancy::{Step, StepStatus},
};

/// Announcements a subscriber may fall behind by; one that lags just reads the table again.
const NEWS_BUFFER: usize = 1024;
/// Tries to store a bulk of events before giving up on it (and logging it).
const WRITE_ATTEMPTS: u32 = 5;

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

    fn row(&self) -> provisioning_events::ActiveModel {
        provisioning_events::ActiveModel {
            batch_id: Set(self.batch_id),
            seq: Set(self.seq),
            tenant_name: Set(self.tenant_name.clone()),
            schema_name: Set(self.schema_name.clone()),
            step: Set(self.step),
            status: Set(self.status),
            message: Set(self.message.clone()),
            completed: Set(self.completed),
            total: Set(self.total),
            at: Set(self.at.fixed_offset()),
        }
    }

    /// A stored event; `None` for a row this server cannot read.
    pub fn from_row(row: provisioning_events::Model) -> Option<Self> {
        Some(ProgressEvent {
            batch_id: row.batch_id,
            seq: row.seq,
            tenant_name: row.tenant_name,
            schema_name: row.schema_name,
            step: row.step,
            status: row.status,
            message: row.message,
            completed: row.completed,
            total: row.total,
            at: row.at.with_timezone(&Utc),
        })
    }
}

/// Where the log of a batch this server runs stands.
struct Counter {
    next_seq: i32,
    completed: i32,
}

enum Write {
    /// An event, a change of the batch's records, or both: stored in one transaction with
    /// every event published before them.
    Stored(Option<ProgressEvent>, Option<Change>),
    /// Answered once everything published before it is stored.
    Flush(oneshot::Sender<()>),
}

/// SQL with its values written in, and who waits for it to commit (or to be given up on).
struct Change {
    sql: String,
    stored: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub struct EventHub {
    db: crate::db::Pool,
    counters: Arc<Mutex<HashMap<Uuid, Counter>>>,
    writes: mpsc::UnboundedSender<Write>,
    /// Ids of batches with newly stored events, from this server's writer and from other
    /// servers' notifications.
    news: broadcast::Sender<Uuid>,
}

impl EventHub {
    /// A hub whose events are written to `db` by a background task.
    pub fn new(db: crate::db::Pool) -> Self {
        let (writes, pending) = mpsc::unbounded_channel();
        let news = broadcast::channel(NEWS_BUFFER).0;
        tokio::spawn(write_events(db.clone(), pending, news.clone()));
        EventHub {
            db,
            counters: Arc::default(),
            writes,
            news,
        }
    }

    /// Starts publishing for a batch whose lock this server now holds: `seq` and `completed`
    /// continue from what is stored (a server that ran it before may have published some).
    pub async fn open(&self, batch_id: Uuid) -> Result<(), DbErr> {
        let (last_seq, completed): (Option<i32>, Option<i32>) = provisioning_events::Entity::find()
            .select_only()
            .column_as(provisioning_events::Column::Seq.max(), "last_seq")
            .column_as(provisioning_events::Column::Completed.max(), "completed")
            .filter(provisioning_events::Column::BatchId.eq(batch_id))
            .into_tuple()
            .one(&self.db)
            .await?
            .unwrap_or((None, None));
        self.counters.lock().expect("event hub poisoned").insert(
            batch_id,
            Counter {
                next_seq: last_seq.map_or(0, |seq| seq + 1),
                completed: completed.unwrap_or(0),
            },
        );
        Ok(())
    }

    /// Stops publishing for a batch, once everything published is stored: another server may
    /// continue its log.
    pub async fn close(&self, batch_id: Uuid) {
        self.flush().await;
        self.counters
            .lock()
            .expect("event hub poisoned")
            .remove(&batch_id);
    }

    /// Publishes an event: numbered now, stored and announced in the background, in order, so
    /// that publishing never waits for the database.
    pub fn publish(&self, event: ProgressEvent) {
        self.hand_over(Some(event), None);
    }

    /// Stores `change` (SQL with its values written in: a change of a batch's or a job's record),
    /// with `event` (numbered now) and every event published before it, in one transaction; returns
    /// once it committed. A server stopping before that leaves neither the change nor its event.
    pub async fn store_with(
        &self,
        change: String,
        event: Option<ProgressEvent>,
    ) -> Result<(), DbErr> {
        let (stored, committed) = oneshot::channel();
        let stopped = || DbErr::Custom("the event writer has stopped".into());
        if !self.hand_over(
            event,
            Some(Change {
                sql: change,
                stored,
            }),
        ) {
            return Err(stopped());
        }
        committed
            .await
            .map_err(|_| stopped())?
            .map_err(DbErr::Custom)
    }

    /// Numbers the event of an [`open`](Self::open) batch, if any, and hands it to the writer
    /// with the change, if any; whether the writer took them.
    ///
    /// The number is the next `seq` and the tenants `completed` so far, together, so
    /// `completed` never goes back in `seq` order. A tenant's `DONE` counts; the batch's last
    /// event may carry a larger count (its total) and keeps it. The writer gets the event
    /// before the next one is numbered, so it gets them in `seq` order.
    fn hand_over(&self, event: Option<ProgressEvent>, change: Option<Change>) -> bool {
        let mut counters = self.counters.lock().expect("event hub poisoned");
        let event = event.map(|mut event| {
            let counter = counters.entry(event.batch_id).or_insert_with(|| {
                tracing::error!(batch = %event.batch_id, "an event of a batch not opened; numbering from 0");
                Counter {
                    next_seq: 0,
                    completed: 0,
                }
            });
            event.seq = counter.next_seq;
            counter.next_seq += 1;
            if event.ends_tenant() {
                counter.completed += 1;
            }
            counter.completed = counter.completed.max(event.completed);
            event.completed = counter.completed;
            event
        });
        self.writes.send(Write::Stored(event, change)).is_ok()
    }

    /// Waits until every event published so far is stored (or given up on).
    pub async fn flush(&self) {
        let (done, stored) = oneshot::channel();
        if self.writes.send(Write::Flush(done)).is_ok() {
            let _ = stored.await;
        }
    }

    /// Tells this server's subscribers that the batch has new stored events.
    pub fn announce(&self, batch_id: Uuid) {
        // No subscriber is fine.
        let _ = self.news.send(batch_id);
    }

    /// A notification heard on [`BATCH_EVENTS_CHANNEL`] (its payload is the batch id).
    pub fn heard(&self, payload: &str) {
        match payload.parse::<Uuid>() {
            Ok(batch_id) => self.announce(batch_id),
            Err(_) => tracing::warn!(payload, "a batch event notification not understood"),
        }
    }

    /// Announcements of new stored events, by batch id.
    pub fn news(&self) -> broadcast::Receiver<Uuid> {
        self.news.subscribe()
    }
}

/// Notifies every server, when the transaction commits, that `batch_id` has new events: SQL with
/// its values written in.
fn notify_sql(batch_id: Uuid) -> String {
    let text = |value: String| PostgresQueryBuilder.value_to_string(&value.into());
    format!(
        "SELECT pg_notify({}, {})",
        text(BATCH_EVENTS_CHANNEL.to_owned()),
        text(batch_id.to_string())
    )
}

/// Stores events and changes in bulk, in the order they were published, each bulk in one
/// transaction with its notifications; then announces them here.
async fn write_events(
    db: crate::db::Pool,
    mut pending: mpsc::UnboundedReceiver<Write>,
    news: broadcast::Sender<Uuid>,
) {
    let mut buffer = Vec::new();
    while pending.recv_many(&mut buffer, 500).await > 0 {
        let mut events = Vec::new();
        let mut changes = Vec::new();
        let mut answers = Vec::new();
        let mut flushes = Vec::new();
        for write in buffer.drain(..) {
            match write {
                Write::Stored(event, change) => {
                    events.extend(event);
                    if let Some(Change { sql, stored }) = change {
                        changes.push(sql);
                        answers.push(stored);
                    }
                }
                Write::Flush(done) => flushes.push(done),
            }
        }
        if !events.is_empty() || !changes.is_empty() {
            let mut batches: Vec<Uuid> = events.iter().map(|event| event.batch_id).collect();
            batches.sort_unstable();
            batches.dedup();
            let mut attempt = 1;
            let stored = loop {
                match store(&db, &events, &changes, &batches).await {
                    Ok(()) => break Ok(()),
                    Err(err) if attempt < WRITE_ATTEMPTS => {
                        tracing::warn!(error = %err, attempt, "could not record progress events; trying again");
                        tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
                        attempt += 1;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, lost = events.len(), changes = changes.len(), "could not record progress events");
                        break Err(err.to_string());
                    }
                }
            };
            for batch_id in batches {
                let _ = news.send(batch_id);
            }
            for answer in answers {
                let _ = answer.send(stored.clone());
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn store(
    db: &crate::db::Pool,
    events: &[ProgressEvent],
    changes: &[String],
    batches: &[Uuid],
) -> Result<(), DbErr> {
    let mut script = String::from("BEGIN;\n");
    if !events.is_empty() {
        // Stored before: an earlier try that committed without our hearing of it.
        let insert =
            provisioning_events::Entity::insert_many(events.iter().map(ProgressEvent::row))
                .on_conflict(
                    OnConflict::columns([
                        provisioning_events::Column::BatchId,
                        provisioning_events::Column::Seq,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .into_query()
                .to_string(PostgresQueryBuilder);
        script.push_str(&insert);
        script.push_str(";\n");
    }
    for change in changes {
        script.push_str(change);
        script.push_str(";\n");
    }
    for batch_id in batches {
        script.push_str(&notify_sql(*batch_id));
        script.push_str(";\n");
    }
    script.push_str("COMMIT;");
    // One round trip for the whole bulk.
    run_script(db, script).await.map(drop)
}

//! Following a batch's progress: everything so far, then live events, ending with the batch.
//! Subscriptions and the command line's progress bar read the same stream.

use std::time::Duration;

use chrono::Utc;
use entity::public::provisioning_events;
use futures_util::{
    StreamExt,
    stream::{self, BoxStream},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::{
    batch::{self, events::ProgressEvent},
    state::SharedState,
};

/// How often a follower of a batch run by another server looks for news.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Every event of the batch: from this server's memory while it runs the batch (replayed, then
/// live), otherwise from `provisioning_events`, polled until the batch ends.
pub fn follow(state: SharedState, batch_id: Uuid) -> BoxStream<'static, ProgressEvent> {
    match state.events.subscribe(batch_id) {
        Some(subscription) => live_stream(state, batch_id, subscription),
        None => stored_stream(state, batch_id),
    }
}

/// Replays the in-memory log, then follows the live feed; a subscriber that falls behind is
/// brought up to date from the log, so it misses nothing and never slows the batch.
fn live_stream(
    state: SharedState,
    batch_id: Uuid,
    subscription: batch::events::Subscription,
) -> BoxStream<'static, ProgressEvent> {
    let next_seq = subscription.past.len() as i32;
    let ended = subscription.past.iter().any(ProgressEvent::ends_batch);
    let past = stream::iter(subscription.past);
    if ended {
        return past.boxed();
    }
    let live = stream::unfold(
        (subscription.live, next_seq, false),
        move |(mut live, mut next_seq, done)| {
            let state = state.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match live.recv().await {
                        Ok(event) if event.seq < next_seq => continue,
                        Ok(event) => {
                            next_seq = event.seq + 1;
                            let done = event.ends_batch();
                            return Some((vec![event], (live, next_seq, done)));
                        }
                        Err(RecvError::Lagged(_)) => {
                            let missed = state.events.since(batch_id, next_seq);
                            let Some(last) = missed.last() else { continue };
                            next_seq = last.seq + 1;
                            let done = missed.iter().any(ProgressEvent::ends_batch);
                            return Some((missed, (live, next_seq, done)));
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            }
        },
    )
    .flat_map(stream::iter);
    past.chain(live).boxed()
}

/// A batch not in this server's memory: its stored events, then (while it is unfinished, run
/// by another server) whatever new ones appear.
fn stored_stream(state: SharedState, batch_id: Uuid) -> BoxStream<'static, ProgressEvent> {
    stream::unfold((0_i32, false), move |(next_seq, done)| {
        let state = state.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let rows = provisioning_events::Entity::find()
                    .filter(provisioning_events::Column::BatchId.eq(batch_id))
                    .filter(provisioning_events::Column::Seq.gte(next_seq))
                    .order_by_asc(provisioning_events::Column::Seq)
                    .all(&state.db)
                    .await
                    .ok()?;
                let events: Vec<ProgressEvent> = rows.into_iter().map(stored_event).collect();
                let finished = batch::load(&state, batch_id)
                    .await
                    .ok()
                    .flatten()
                    .is_none_or(|report| report.batch.finished_at.is_some());
                if let Some(last) = events.last() {
                    let next = last.seq + 1;
                    let done = finished || events.iter().any(ProgressEvent::ends_batch);
                    return Some((events, (next, done)));
                }
                if finished {
                    return None;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
    })
    .flat_map(stream::iter)
    .boxed()
}

fn stored_event(row: provisioning_events::Model) -> ProgressEvent {
    ProgressEvent {
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
    }
}

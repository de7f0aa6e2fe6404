//! Following a batch's progress: every stored event in `seq` order, then each new one as it is
//! announced, ending with the batch. Subscriptions and the command line's progress bar read the
//! same stream, on whichever server they are: events are stored before they are announced.

use std::time::Duration;

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

/// How long a follower waits for an announcement before it reads the table anyway (an
/// announcement from another server is lost while this server's listener reconnects).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Every event of the batch, from the first, until its last.
pub fn follow(state: SharedState, batch_id: Uuid) -> BoxStream<'static, ProgressEvent> {
    // Subscribed before the first read: an event stored after that read is announced here.
    let news = state.events.news();
    stream::unfold((news, 0_i32, false), move |(mut news, next_seq, done)| {
        let state = state.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let events = stored_since(&state, batch_id, next_seq).await?;
                if let Some(last) = events.last() {
                    let next = last.seq + 1;
                    let done = events.iter().any(ProgressEvent::ends_batch);
                    return Some((events, (news, next, done)));
                }
                // A batch finished without a last event (by an older server) ends here.
                let finished = batch::load(&state, batch_id)
                    .await
                    .ok()?
                    .is_none_or(|report| report.batch.finished_at.is_some());
                if finished && stored_since(&state, batch_id, next_seq).await?.is_empty() {
                    return None;
                }
                wait_for_news(&mut news, batch_id).await;
            }
        }
    })
    .flat_map(stream::iter)
    .boxed()
}

/// The batch's stored events from `seq` on, as far as they run without a gap.
async fn stored_since(state: &SharedState, batch_id: Uuid, seq: i32) -> Option<Vec<ProgressEvent>> {
    let rows = provisioning_events::Entity::find()
        .filter(provisioning_events::Column::BatchId.eq(batch_id))
        .filter(provisioning_events::Column::Seq.gte(seq))
        .order_by_asc(provisioning_events::Column::Seq)
        .all(&state.db)
        .await
        .ok()?;
    let mut expected = seq;
    Some(
        rows.into_iter()
            .filter_map(ProgressEvent::from_row)
            .take_while(|event| {
                let next = event.seq == expected;
                expected += 1;
                next
            })
            .collect(),
    )
}

/// Until the batch has news, or [`POLL_INTERVAL`] passed.
async fn wait_for_news(news: &mut tokio::sync::broadcast::Receiver<Uuid>, batch_id: Uuid) {
    let _ = tokio::time::timeout(POLL_INTERVAL, async {
        loop {
            match news.recv().await {
                Ok(id) if id == batch_id => return,
                Ok(_) => continue,
                // Fell behind: something may be ours.
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => std::future::pending().await,
            }
        }
    })
    .await;
}

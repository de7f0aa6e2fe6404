//! Statements counted per GraphQL operation.
//!
//! The pool's metric callback calls [`record`] for every statement it sends; the count lands in
//! the operation whose task (or DataLoader batch, see [`spawn_in_operation`]) sent it. Work of
//! other requests and background jobs runs outside any operation and is never counted, so a
//! count is exact whatever else the server is doing.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

tokio::task_local! {
    static OPERATION_STATEMENTS: Arc<AtomicU64>;
}

/// Counts one statement for the operation running on this task, if any.
pub fn record() {
    let _ = OPERATION_STATEMENTS.try_with(|count| count.fetch_add(1, Ordering::Relaxed));
}

/// Runs `operation` and returns its output with the number of statements it sent.
pub async fn counted<F: Future>(operation: F) -> (F::Output, u64) {
    let count = Arc::new(AtomicU64::new(0));
    let output = OPERATION_STATEMENTS.scope(count.clone(), operation).await;
    (output, count.load(Ordering::Relaxed))
}

/// Spawns work done on behalf of the current operation (a DataLoader batch), so that its
/// statements count for the operation.
pub fn spawn_in_operation<F>(work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match OPERATION_STATEMENTS.try_with(Arc::clone) {
        Ok(count) => tokio::spawn(OPERATION_STATEMENTS.scope(count, work)),
        Err(_) => tokio::spawn(work),
    };
}

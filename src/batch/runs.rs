//! The batch runs of this server, and draining them: a server being stopped starts no further
//! tenant jobs and takes over no batches, lets the jobs running finish, then leaves the rest of
//! each batch (and its lock) to whichever server runs next.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{sync::watch, task::JoinHandle};

pub struct Runs {
    draining: AtomicBool,
    /// Batch runs in progress on this server.
    active: Arc<watch::Sender<usize>>,
}

impl Default for Runs {
    fn default() -> Self {
        Runs {
            draining: AtomicBool::new(false),
            active: Arc::new(watch::channel(0).0),
        }
    }
}

impl Runs {
    /// Stops starting tenant jobs and taking batches over; for good.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Resolves once no batch runs here (after [`drain`](Self::drain): once every job that was
    /// running has ended).
    pub async fn drained(&self) {
        let mut active = self.active.subscribe();
        let _ = active.wait_for(|runs| *runs == 0).await;
    }

    /// Runs a batch in a task of its own, counted until it ends.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        self.active.send_modify(|runs| *runs += 1);
        let counted = Counted(self.active.clone());
        tokio::spawn(async move {
            let _counted = counted;
            work.await
        })
    }
}

/// Uncounts a run when it ends, however it ends.
struct Counted(Arc<watch::Sender<usize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.send_modify(|runs| *runs -= 1);
    }
}

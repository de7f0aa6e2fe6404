//! Notes of use written at most once per window (a session's `last_used_at`, a tenant's
//! `lastActivityAt`): every request notes one, few of them write.

use std::time::Duration;

use moka::future::Cache;
use uuid::Uuid;

/// Remembers for `window` which keys were noted, so that only the first note of a key in each
/// window is told to write.
#[derive(Clone)]
pub struct Debounce {
    noted: Cache<Uuid, ()>,
}

impl Debounce {
    pub fn new(window: Duration) -> Self {
        Debounce {
            noted: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(window)
                .build(),
        }
    }

    /// Whether this is the first note of `key` in its window (of concurrent first notes, one).
    pub async fn first_note(&self, key: Uuid) -> bool {
        // Nearly every note falls inside a window: a plain look-up answers it without the
        // entry's bookkeeping.
        if self.noted.contains_key(&key) {
            return false;
        }
        self.noted.entry(key).or_insert(()).await.is_fresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_first_note_of_a_key_in_its_window_is_first() {
        let debounce = Debounce::new(Duration::from_secs(60));
        let (one, other) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(debounce.first_note(one).await);
        assert!(!debounce.first_note(one).await);
        assert!(debounce.first_note(other).await);
        let racing =
            futures_util::future::join_all((0..8).map(|_| debounce.first_note(Uuid::nil()))).await;
        assert_eq!(racing.iter().filter(|first| **first).count(), 1);
    }
}

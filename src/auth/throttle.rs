//! Login throttling: failed attempts are counted per tenant + email and per client address, and
//! past a limit further attempts are refused with `RATE_LIMITED` until the window passes.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use moka::future::Cache;

use crate::{
    error::{AppError, AppResult},
    primitives::credentials::email_key,
};

/// Failures allowed for one account within the window.
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 5;
/// Failures allowed from one client address within the window (many accounts).
pub const MAX_FAILURES_PER_ADDRESS: u32 = 50;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failures counted since the window of a key opened.
struct Failures {
    count: AtomicU32,
    since: Instant,
}

#[derive(Clone)]
pub struct LoginThrottle {
    failures: Cache<String, Arc<Failures>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            failures: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }
}

/// The keys a login attempt is counted under.
pub struct AttemptKeys {
    account: String,
    address: Option<String>,
}

impl AttemptKeys {
    /// `scope` is the tenant id, or `platform` for operator logins.
    pub fn new(scope: &str, email: &str, client: Option<IpAddr>) -> Self {
        AttemptKeys {
            account: format!("account:{scope}:{}", email_key(email)),
            address: client.map(|addr| format!("address:{addr}")),
        }
    }
}

impl LoginThrottle {
    /// Refuses the attempt when either key has used up its failures.
    pub async fn check(&self, keys: &AttemptKeys) -> AppResult<()> {
        let limits = [
            (Some(&keys.account), MAX_FAILURES_PER_ACCOUNT),
            (keys.address.as_ref(), MAX_FAILURES_PER_ADDRESS),
        ];
        for (key, limit) in limits {
            let Some(key) = key else { continue };
            if let Some(failures) = self.failures.get(key).await
                && failures.count.load(Ordering::Relaxed) >= limit
            {
                let waited = failures.since.elapsed();
                return Err(AppError::RateLimited {
                    retry_after_secs: WINDOW.saturating_sub(waited).as_secs().max(1),
                });
            }
        }
        Ok(())
    }

    pub async fn record_failure(&self, keys: &AttemptKeys) {
        for key in [Some(&keys.account), keys.address.as_ref()]
            .into_iter()
            .flatten()
        {
            self.failures
                .get_with(key.clone(), async {
                    Arc::new(Failures {
                        count: AtomicU32::new(0),
                        since: Instant::now(),
                    })
                })
                .await
                .count
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A successful login clears its account's failures (not the address's).
    pub async fn record_success(&self, keys: &AttemptKeys) {
        self.failures.invalidate(&keys.account).await;
    }
}

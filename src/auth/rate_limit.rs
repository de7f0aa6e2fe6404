//! Request rates: each tenant (all its users and its API key together) and each platform
//! operator may start so many GraphQL operations a minute on one server.
//!
//! A tenant's rate is its own `settings.limits.requestsPerMinute` when set, else
//! `TENANT_RATE_LIMIT_PER_MINUTE`; an operator's is `PLATFORM_RATE_LIMIT_PER_MINUTE`. Each
//! caller has a GCRA bucket (governor) holding a minute's worth of operations that refills
//! evenly, so a burst may spend the whole minute at once and then waits.
//!
//! Rates differ per tenant, and governor's keyed limiter has one quota for every key, so each
//! bucket is a direct limiter of its own, kept in a cache: a bucket idle for longer than it
//! takes to refill is full, so forgetting it changes nothing, and the cache forgets it then
//! (memory follows the callers of the last minutes, not every tenant ever seen). A bucket made
//! for another rate than the caller's current one is replaced, so a settings change counts
//! from the next request, without a restart.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    state::{InMemoryState, NotKeyed},
};
use moka::sync::Cache;
use uuid::Uuid;

use crate::{
    auth::Principal,
    config::Config,
    error::{AppError, AppResult},
    primitives::metrics::Metrics,
};

/// A bucket refills completely in a minute: idle longer than this, it is as good as new.
const IDLE_FORGET: Duration = Duration::from_secs(61);
/// Buckets kept at most; past it the least used go first (and start again full).
const MAX_BUCKETS: u64 = 200_000;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum Caller {
    Tenant(Uuid),
    Operator(Uuid),
}

struct Bucket {
    per_minute: NonZeroU32,
    limiter: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
}

impl Bucket {
    fn new(per_minute: NonZeroU32) -> Arc<Self> {
        Arc::new(Bucket {
            per_minute,
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
        })
    }
}

/// The buckets of one server.
pub struct RateLimits {
    buckets: Cache<Caller, Arc<Bucket>>,
    tenant_default: Option<NonZeroU32>,
    platform: Option<NonZeroU32>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(config: &Config) -> Self {
        RateLimits {
            buckets: Cache::builder()
                .max_capacity(MAX_BUCKETS)
                .time_to_idle(IDLE_FORGET)
                .build(),
            tenant_default: config.tenant_rate_limit_per_minute,
            platform: config.platform_rate_limit_per_minute,
            clock: DefaultClock::default(),
        }
    }

    /// Takes `operations` from the principal's bucket, or refuses them all with
    /// `RATE_LIMITED` and the seconds until they would fit. Anonymous callers have no bucket
    /// (logins are throttled on their own).
    pub fn admit(
        &self,
        metrics: &Metrics,
        principal: &Principal,
        operations: usize,
    ) -> AppResult<()> {
        let (caller, per_minute) = match principal {
            Principal::Anonymous => return Ok(()),
            Principal::Tenant(context) => (
                Caller::Tenant(context.tenant.id),
                context.tenant.requests_per_minute.or(self.tenant_default),
            ),
            Principal::Platform(operator) => (Caller::Operator(operator.id), self.platform),
        };
        let (Some(per_minute), Some(operations)) = (
            per_minute,
            NonZeroU32::new(u32::try_from(operations).unwrap_or(u32::MAX)),
        ) else {
            return Ok(());
        };
        let mut bucket = self.buckets.get_with(caller, || Bucket::new(per_minute));
        if bucket.per_minute != per_minute {
            bucket = Bucket::new(per_minute);
            self.buckets.insert(caller, bucket.clone());
        }
        let wait = match bucket.limiter.check_n(operations) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(self.clock.now()),
            // More operations at once than a whole minute holds: never admitted.
            Err(_) => Duration::from_secs(60),
        };
        let reason = match caller {
            Caller::Tenant(id) => {
                metrics.count_tenant_rate_limited(id);
                "too many requests for this tenant"
            }
            Caller::Operator(_) => {
                metrics.count_platform_rate_limited();
                "too many requests for this operator"
            }
        };
        Err(AppError::RateLimited {
            reason,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        })
    }
}

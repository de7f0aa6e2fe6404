//! A fair share of the pool: how many pinned transactions one tenant, and one request, may hold
//! at once.
//!
//! Every transaction acting for a tenant takes a slot of its request and then a slot of its
//! tenant before it takes a pooled connection, and gives both back when it ends. So a tenant
//! that floods the server holds at most `TENANT_DB_CONNECTIONS` of the pool (by default half),
//! and the rest stays free for everybody else; a document of many root fields or aliases runs
//! them `REQUEST_DB_CONNECTIONS` at a time instead of taking a connection each. A transaction
//! that cannot get a slot of its tenant within `DB_SLOT_WAIT_SECONDS` is refused with
//! `RATE_LIMITED`; nobody waits on the pool itself into its time-out.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use moka::sync::Cache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::{
    config::Config,
    error::{AppError, AppResult},
};

/// A tenant's slots are forgotten after this long unused; a transaction never lives that long
/// (requests time out long before), so no slot is held in a semaphore that was forgotten.
const IDLE_FORGET: Duration = Duration::from_secs(600);
const MAX_TENANTS: u64 = 200_000;

/// The slots of every tenant on this server.
pub struct DbShares {
    tenants: Cache<Uuid, Arc<Semaphore>>,
    per_tenant: usize,
    per_request: usize,
    wait: Duration,
}

impl DbShares {
    pub fn new(config: &Config) -> Self {
        DbShares {
            tenants: Cache::builder()
                .max_capacity(MAX_TENANTS)
                .time_to_idle(IDLE_FORGET)
                .build(),
            per_tenant: config.tenant_db_connections as usize,
            per_request: config.request_db_connections as usize,
            wait: config.db_slot_wait,
        }
    }

    /// The slots a new request of `tenant` draws from: its tenant's, and its own.
    pub fn for_request(&self, tenant: Uuid) -> DbSlots {
        DbSlots {
            tenant: self
                .tenants
                .get_with(tenant, || Arc::new(Semaphore::new(self.per_tenant))),
            request: Arc::new(Semaphore::new(self.per_request)),
            refused: Arc::default(),
            wait: self.wait,
        }
    }
}

/// What one request may hold of the pool; clones share the slots.
#[derive(Debug, Clone)]
pub struct DbSlots {
    tenant: Arc<Semaphore>,
    request: Arc<Semaphore>,
    /// Set once the request waited past the bound: its other fields are refused at once
    /// instead of each waiting as long again.
    refused: Arc<AtomicBool>,
    wait: Duration,
}

/// The right to hold one pooled connection for a tenant's request; dropping it gives it back.
#[derive(Debug)]
pub struct DbSlot {
    _request: OwnedSemaphorePermit,
    _tenant: OwnedSemaphorePermit,
}

impl DbSlots {
    /// Waits for a slot of the request, then of its tenant (so that a request waiting for its
    /// own turn holds none of its tenant's); `RATE_LIMITED` when the tenant's slots stay taken
    /// past the wait bound.
    pub async fn acquire(&self) -> AppResult<DbSlot> {
        // A request's own fields wait for each other as long as the request may last (its
        // time-out); only the wait for the tenant's share, which others hold, is bounded.
        let request = self.request.clone().acquire_owned().await;
        let refused = || AppError::RateLimited {
            reason: "too much database work of this tenant at once",
            retry_after_secs: 1,
        };
        if self.refused.load(Ordering::Relaxed) {
            return Err(refused());
        }
        let tenant = tokio::time::timeout(self.wait, self.tenant.clone().acquire_owned())
            .await
            .map_err(|_| {
                self.refused.store(true, Ordering::Relaxed);
                refused()
            })?;
        match (request, tenant) {
            (Ok(request), Ok(tenant)) => Ok(DbSlot {
                _request: request,
                _tenant: tenant,
            }),
            // The semaphores are never closed.
            _ => Err(AppError::internal(anyhow::anyhow!(
                "a database slot semaphore was closed"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(per_tenant: &str, per_request: &str) -> DbShares {
        let env = [
            ("TENANT_DB_CONNECTIONS", per_tenant),
            ("REQUEST_DB_CONNECTIONS", per_request),
            ("DB_SLOT_WAIT_SECONDS", "1"),
        ];
        let config = Config::from_lookup(|name| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
        .unwrap();
        DbShares::new(&config)
    }

    fn reason(refused: AppError) -> &'static str {
        match refused {
            AppError::RateLimited { reason, .. } => reason,
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_holds_at_most_its_share_and_gets_slots_back_as_they_end() {
        let shares = shares("10", "2");
        let request = shares.for_request(Uuid::nil());
        let first = request.acquire().await.unwrap();
        let _second = request.clone().acquire().await.unwrap();
        // A third field of the request waits for one of the two to end, however long.
        let third = tokio::spawn({
            let request = request.clone();
            async move { request.acquire().await.map(drop) }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!third.is_finished());
        drop(first);
        third.await.unwrap().unwrap();
        // Another request of the same tenant has slots of its own.
        shares.for_request(Uuid::nil()).acquire().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenants_requests_share_its_slots_and_other_tenants_are_not_affected() {
        let shares = shares("2", "2");
        let busy = Uuid::from_u128(1);
        let _held = [
            shares.for_request(busy).acquire().await.unwrap(),
            shares.for_request(busy).acquire().await.unwrap(),
        ];
        let waiting = shares.for_request(busy);
        let started = tokio::time::Instant::now();
        let refused = waiting.acquire().await.unwrap_err();
        assert_eq!(
            reason(refused),
            "too much database work of this tenant at once"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        // The request's next field is refused at once, not after another wait.
        let started = tokio::time::Instant::now();
        waiting.acquire().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::ZERO);
        shares
            .for_request(Uuid::from_u128(2))
            .acquire()
            .await
            .unwrap();
    }
}

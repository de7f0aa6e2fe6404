//! Login throttling that a burst cannot outrun: an attempt takes its place in the counters
//! *before* the password is verified, and gives it back only when the password was right (or was
//! never checked), so a thousand guesses sent at once get no further than the limit.
//!
//! Three counters, each over a window that opens with its first attempt:
//! - **account from one client**: `MAX_FAILURES_PER_ACCOUNT` failures per account and client
//!   key, then that client is refused for that account (`RATE_LIMITED`) until the window ends;
//! - **client**: `MAX_FAILURES_PER_ADDRESS` failures from one client key over all accounts;
//! - **account everywhere**: never refuses (or an attacker could lock a real user out from every
//!   address); past `MAX_FAILURES_PER_ACCOUNT` failures each further attempt on the account waits a
//!   delay that doubles up to `MAX_SLOWDOWN`, so a real user from a new address still gets in.
//!
//! A client key is an IPv4 address or an IPv6 /64 (one subscriber's usual allocation), so
//! stepping through the addresses of one's own /64 earns no fresh attempts.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use moka::sync::Cache;

use crate::{
    error::{AppError, AppResult},
    primitives::credentials::email_key,
};

/// Failures allowed for one account from one client key within the window.
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 5;
/// Failures allowed from one client key within the window (over many accounts).
pub const MAX_FAILURES_PER_ADDRESS: u32 = 50;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first delay of an account that failed more than `MAX_FAILURES_PER_ACCOUNT` times in all.
pub const SLOWDOWN_STEP: Duration = Duration::from_millis(250);
/// The longest delay: what a real user pays at worst while their account is under attack.
pub const MAX_SLOWDOWN: Duration = Duration::from_secs(8);

/// The key a client's attempts are counted under: an IPv4 address, or the /64 of an IPv6
/// address (an IPv4-mapped IPv6 address counts as its IPv4 address).
pub fn client_key(addr: IpAddr) -> IpNet {
    let v4 = |addr| IpNet::V4(Ipv4Net::from(addr));
    match addr {
        IpAddr::V4(addr) => v4(addr),
        IpAddr::V6(addr) => match addr.to_ipv4_mapped() {
            Some(mapped) => v4(mapped),
            None => IpNet::V6(
                Ipv6Net::new(addr, 64)
                    .expect("64 is a valid prefix")
                    .trunc(),
            ),
        },
    }
}

/// The delay of an attempt on an account that has `failures` failures (or attempts under way)
/// in its window, from every client together.
pub fn slowdown(failures: u32) -> Duration {
    let Some(over) = failures.checked_sub(MAX_FAILURES_PER_ACCOUNT) else {
        return Duration::ZERO;
    };
    let factor = 1u32 << over.min(16);
    SLOWDOWN_STEP.saturating_mul(factor).min(MAX_SLOWDOWN)
}

/// Attempts counted since the window of a key opened: failures, and attempts still under way.
struct Counter {
    used: AtomicU32,
    opened: Instant,
}

impl Counter {
    fn new() -> Self {
        Counter {
            used: AtomicU32::new(0),
            opened: Instant::now(),
        }
    }

    /// Takes a place when fewer than `limit` are taken: one atomic step, so concurrent
    /// attempts can never take more than `limit` between them.
    fn try_take(&self, limit: u32) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < limit).then_some(used + 1)
            })
            .is_ok()
    }

    /// Takes a place whatever the count; returns how many were taken before.
    fn take(&self) -> u32 {
        self.used.fetch_add(1, Ordering::AcqRel)
    }

    fn give_back(&self) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_sub(1)
            });
    }

    fn retry_after(&self) -> AppError {
        AppError::RateLimited {
            reason: "too many attempts",
            retry_after_secs: WINDOW
                .saturating_sub(self.opened.elapsed())
                .as_secs()
                .max(1),
        }
    }
}

#[derive(Clone)]
pub struct LoginThrottle {
    counters: Cache<String, Arc<Counter>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            counters: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(WINDOW)
                .build(),
        }
    }
}

/// The keys a login attempt is counted under.
pub struct AttemptKeys {
    /// The account from this client.
    pair: String,
    /// The client, over every account (none when the client's address is unknown).
    client: Option<String>,
    /// The account, from every client.
    account: String,
}

impl AttemptKeys {
    /// `scope` is the tenant id, or `platform` for operator logins.
    pub fn new(scope: &str, email: &str, client: Option<IpAddr>) -> Self {
        let account = format!("{scope}:{}", email_key(email));
        let client = client.map(client_key);
        let pair_client = client.map_or_else(|| "unknown".to_owned(), |key| key.to_string());
        AttemptKeys {
            pair: format!("pair:{account}@{pair_client}"),
            client: client.map(|key| format!("client:{key}")),
            account: format!("account:{account}"),
        }
    }
}

impl LoginThrottle {
    fn counter(&self, key: &str) -> Arc<Counter> {
        // One counter per key even when attempts race: moka runs one `init` per missing key.
        self.counters
            .get_with_by_ref(key, || Arc::new(Counter::new()))
    }

    /// Takes this attempt's places before the password is verified, and waits out the account's
    /// slowdown. Refused with `RATE_LIMITED` when the account from this client, or the client,
    /// has no place left. Unless the attempt is settled otherwise, it counts as a failure.
    pub async fn reserve(&self, keys: &AttemptKeys) -> AppResult<LoginAttempt> {
        let pair = self.counter(&keys.pair);
        if !pair.try_take(MAX_FAILURES_PER_ACCOUNT) {
            return Err(pair.retry_after());
        }
        let client = match &keys.client {
            None => None,
            Some(key) => {
                let client = self.counter(key);
                if !client.try_take(MAX_FAILURES_PER_ADDRESS) {
                    pair.give_back();
                    return Err(client.retry_after());
                }
                Some(client)
            }
        };
        let account = self.counter(&keys.account);
        let delay = slowdown(account.take());
        let attempt = LoginAttempt {
            throttle: self.clone(),
            pair_key: keys.pair.clone(),
            pair,
            client,
            account,
            settled: false,
        };
        if !delay.is_zero() {
            tracing::debug!(?delay, "login slowed down: the account failed often");
            tokio::time::sleep(delay).await;
        }
        Ok(attempt)
    }
}

/// An attempt holding its places in the counters. Dropped as it is, it stays counted: a
/// failure, whatever ended it (wrong password, an error, or a client that went away).
#[must_use = "an attempt left alone counts as a failure"]
pub struct LoginAttempt {
    throttle: LoginThrottle,
    pair_key: String,
    pair: Arc<Counter>,
    client: Option<Arc<Counter>>,
    account: Arc<Counter>,
    /// The places were given back already.
    settled: bool,
}

impl LoginAttempt {
    /// Passes on the outcome of verifying the password. When the password could not be checked
    /// at all (the hashing queue was full: `RATE_LIMITED`), nothing was learnt, so the places
    /// are given back.
    pub fn checked(&mut self, verified: AppResult<bool>) -> AppResult<bool> {
        if let Err(AppError::RateLimited { .. }) = verified {
            self.give_back();
        }
        verified
    }

    /// The password was right: the places are given back and this client's failures on the
    /// account are forgotten (the client's and the account's other failures still count).
    pub fn succeeded(mut self) {
        self.throttle.counters.invalidate(&self.pair_key);
        self.give_back();
    }

    /// The password was never checked: nothing was learnt, so nothing is counted.
    pub fn not_verified(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.pair.give_back();
        if let Some(client) = &self.client {
            client.give_back();
        }
        self.account.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: &str) -> String {
        client_key(addr.parse().unwrap()).to_string()
    }

    #[test]
    fn ipv4_addresses_are_their_own_key() {
        assert_eq!(key("127.0.0.1"), "127.0.0.1/32");
        assert_ne!(key("127.0.0.1"), key("127.0.0.2"));
    }

    #[test]
    fn ipv6_addresses_are_keyed_by_their_64() {
        // Same /64: the interface half differs.
        assert_eq!(key("::1"), "::/64");
        assert_eq!(key("::1"), key("::2"));
        assert_eq!(key("::1"), key("::ffff:ffff:ffff:fffe"));
        // Another /64: the network half differs.
        assert_eq!(key("0:0:0:1::1"), "0:0:0:1::/64");
        assert_ne!(key("::1"), key("0:0:0:1::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_count_as_ipv4() {
        assert_eq!(key("::ffff:127.0.0.7"), key("127.0.0.7"));
        assert_ne!(key("::ffff:127.0.0.7"), key("::ffff:127.0.0.8"));
    }

    #[test]
    fn the_slowdown_starts_past_the_per_client_limit_doubles_and_stops_growing() {
        for failures in 0..MAX_FAILURES_PER_ACCOUNT {
            assert_eq!(slowdown(failures), Duration::ZERO);
        }
        assert_eq!(slowdown(MAX_FAILURES_PER_ACCOUNT), SLOWDOWN_STEP);
        assert_eq!(slowdown(MAX_FAILURES_PER_ACCOUNT + 1), 2 * SLOWDOWN_STEP);
        assert_eq!(slowdown(MAX_FAILURES_PER_ACCOUNT + 40), MAX_SLOWDOWN);
        assert_eq!(slowdown(u32::MAX), MAX_SLOWDOWN);
    }

    fn keys(client: &str) -> AttemptKeys {
        AttemptKeys::new("tenant", "User@Example.org", Some(client.parse().unwrap()))
    }

    #[tokio::test]
    async fn concurrent_attempts_take_no_more_places_than_the_limit() {
        let throttle = LoginThrottle::default();
        let attempts = futures_util::future::join_all(
            (0..30).map(|_| async { throttle.reserve(&keys("127.0.0.1")).await }),
        )
        .await;
        let admitted = attempts.iter().filter(|attempt| attempt.is_ok()).count();
        assert_eq!(admitted, MAX_FAILURES_PER_ACCOUNT as usize);
        for refused in attempts.iter().filter_map(|attempt| attempt.as_ref().err()) {
            assert!(
                matches!(refused, AppError::RateLimited { retry_after_secs, .. } if *retry_after_secs > 0)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_clients_failures_leave_the_account_open_to_another_client() {
        let throttle = LoginThrottle::default();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            drop(throttle.reserve(&keys("127.0.0.1")).await.unwrap());
        }
        assert!(throttle.reserve(&keys("127.0.0.1")).await.is_err());
        throttle
            .reserve(&keys("127.0.0.2"))
            .await
            .unwrap()
            .succeeded();
    }

    #[tokio::test(start_paused = true)]
    async fn success_and_unchecked_attempts_give_their_places_back() {
        let throttle = LoginThrottle::default();
        // Far more attempts than the limit, none of them a failure.
        for _ in 0..3 * MAX_FAILURES_PER_ACCOUNT {
            throttle.reserve(&keys("::1")).await.unwrap().succeeded();
            throttle.reserve(&keys("::1")).await.unwrap().not_verified();
        }
        // Four failures, then a success from the same /64 forgets them: five more are allowed.
        for _ in 0..MAX_FAILURES_PER_ACCOUNT - 1 {
            drop(throttle.reserve(&keys("::1")).await.unwrap());
        }
        throttle.reserve(&keys("::2")).await.unwrap().succeeded();
        for _ in 0..MAX_FAILURES_PER_ACCOUNT {
            drop(throttle.reserve(&keys("::3")).await.unwrap());
        }
        assert!(throttle.reserve(&keys("::4")).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_failing_from_many_clients_is_slowed_down_not_locked() {
        let throttle = LoginThrottle::default();
        for client in 1..=20 {
            let started = tokio::time::Instant::now();
            drop(
                throttle
                    .reserve(&keys(&format!("127.0.0.{client}")))
                    .await
                    .unwrap(),
            );
            // Paused time: the only time that passes is the slowdown's sleep (to the timer's
            // millisecond).
            let waited = started.elapsed();
            let expected = slowdown(client - 1);
            assert!(waited >= expected && waited <= expected + Duration::from_millis(2));
        }
        let started = tokio::time::Instant::now();
        throttle
            .reserve(&keys("127.0.1.1"))
            .await
            .unwrap()
            .succeeded();
        assert!(started.elapsed() >= MAX_SLOWDOWN);
        assert!(started.elapsed() <= MAX_SLOWDOWN + Duration::from_millis(2));
    }

    #[tokio::test]
    async fn a_client_failing_over_many_accounts_is_refused_everywhere() {
        let throttle = LoginThrottle::default();
        let client = Some("127.0.0.1".parse().unwrap());
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            let keys = AttemptKeys::new("tenant", &format!("user{i}@example.org"), client);
            drop(throttle.reserve(&keys).await.unwrap());
        }
        let fresh = AttemptKeys::new("tenant", "someone@example.org", client);
        assert!(throttle.reserve(&fresh).await.is_err());
        // A refused attempt took no place of its account from that client.
        let elsewhere = AttemptKeys::new(
            "tenant",
            "someone@example.org",
            Some("127.0.0.2".parse().unwrap()),
        );
        throttle.reserve(&elsewhere).await.unwrap().succeeded();
    }
}

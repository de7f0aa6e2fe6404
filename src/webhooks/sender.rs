//! Sending the outbox: every server runs one sender. A round claims due deliveries
//! (`FOR UPDATE SKIP LOCKED`, so two servers never claim the same row), counts the attempt and
//! leases the row for the attempt's time-out, sends them, and records each result. A server
//! that stops mid-send leaves its rows to be claimed again when the lease lapses; a receiver
//! that is down only delays its deliveries, which are retried with exponential backoff until
//! `WEBHOOK_MAX_ATTEMPTS` is spent (then `FAILED`).

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;
use uuid::Uuid;

use super::address::{self, GuardedResolver};
use crate::{config::Config, state::SharedState};

/// Deliveries one round claims at most; they are sent concurrently.
const ROUND_SIZE: i64 = 16;
/// Longest sleep between rounds, in case an announcement was missed (the listener was away).
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Shortest sleep between rounds that claimed less than a full round.
const SHORTEST_WAIT: Duration = Duration::from_millis(50);
/// How much longer than an attempt's time-out its claim lasts.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// Longest error kept with a delivery.
const MAX_ERROR_CHARS: usize = 500;

/// The sender's share of the server state: its HTTP client and its wake-up call.
pub struct Sender {
    client: reqwest::Client,
    wake: Notify,
}

impl Sender {
    /// A client that never follows redirects, ignores proxy settings (the address checks must
    /// see the real destination) and resolves names through [`GuardedResolver`].
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(config)))
            .connect_timeout(config.webhook_timeout)
            .timeout(config.webhook_timeout)
            .user_agent(concat!("tenantgraph-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender {
            client,
            wake: Notify::new(),
        })
    }

    /// Makes the sender look for due deliveries now (new ones were announced).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Sends deliveries until the task is aborted.
pub async fn run(state: SharedState) {
    loop {
        let claimed = match send_due(&state).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "sending webhooks failed; trying again later");
                0
            }
        };
        if claimed as i64 == ROUND_SIZE {
            // There may be more due right now.
            continue;
        }
        let wait = match next_due_in(&state.db).await {
            // Not sooner than SHORTEST_WAIT: a due delivery another server holds stays due.
            Ok(Some(due_in)) => due_in.clamp(SHORTEST_WAIT, POLL_INTERVAL),
            _ => POLL_INTERVAL,
        };
        tokio::select! {
            () = state.webhooks.wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A claimed delivery, with what sending it needs.
struct Claimed {
    id: Uuid,
    event: String,
    data: Value,
    attempts: i32,
    created_at: DateTime<FixedOffset>,
    url: String,
    secret: String,
}

impl Claimed {
    fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        Ok(Claimed {
            id: row.try_get("", "id")?,
            event: row.try_get("", "event")?,
            data: row.try_get("", "data")?,
            attempts: row.try_get("", "attempts")?,
            created_at: row.try_get("", "created_at")?,
            url: row.try_get("", "url")?,
            secret: row.try_get("", "secret")?,
        })
    }
}

/// One round: gives up deliveries whose last attempt never reported back, then claims, sends
/// and records up to [`ROUND_SIZE`] due ones. Returns how many were claimed.
async fn send_due(state: &SharedState) -> Result<usize, DbErr> {
    let config = &state.config;
    state
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE public.webhook_deliveries \
                SET status = 'FAILED', \
                    last_error = coalesce(last_error, 'the last attempt did not report back') \
              WHERE status = 'PENDING' AND attempts >= $1 AND next_attempt_at <= now()",
            [(config.webhook_max_attempts as i32).into()],
        ))
        .await?;
    let lease = config.webhook_timeout + LEASE_MARGIN;
    let claimed: Vec<Claimed> = state
        .db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE public.webhook_deliveries d \
                SET attempts = d.attempts + 1, \
                    next_attempt_at = now() + $2 * interval '1 millisecond' \
               FROM public.webhooks w \
              WHERE w.id = d.webhook_id \
                AND d.id IN (SELECT id FROM public.webhook_deliveries \
                              WHERE status = 'PENDING' AND next_attempt_at <= now() \
                                AND attempts < $3 \
                              ORDER BY next_attempt_at \
                              LIMIT $1 FOR UPDATE SKIP LOCKED) \
          RETURNING d.id, d.event, d.data, d.attempts, d.created_at, w.url, w.secret",
            [
                ROUND_SIZE.into(),
                (lease.as_millis() as i64).into(),
                (config.webhook_max_attempts as i32).into(),
            ],
        ))
        .await?
        .iter()
        .map(Claimed::from_row)
        .collect::<Result<_, _>>()?;
    let count = claimed.len();
    let sends = claimed.into_iter().map(|delivery| async move {
        let result = attempt(state, &delivery).await;
        if let Err(err) = record(state, &delivery, &result).await {
            // The lease lapses and the delivery is tried again.
            tracing::warn!(delivery = %delivery.id, error = %err, "could not record a webhook attempt");
        }
    });
    futures_util::future::join_all(sends).await;
    Ok(count)
}

/// How long until the next pending delivery is due (zero when one is due now).
async fn next_due_in(db: &impl ConnectionTrait) -> Result<Option<Duration>, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (extract(epoch FROM min(next_attempt_at) - now()) * 1000)::bigint AS due_in_ms \
               FROM public.webhook_deliveries WHERE status = 'PENDING'",
        ))
        .await?;
    Ok(row
        .and_then(|row| row.try_get::<Option<i64>>("", "due_in_ms").ok().flatten())
        .map(|ms| Duration::from_millis(ms.max(0) as u64)))
}

/// What one attempt came to.
struct AttemptResult {
    delivered: bool,
    status_code: Option<u16>,
    error: Option<String>,
}

/// The body of a delivery, in the order the contract names its fields.
#[derive(Serialize)]
struct Body<'a> {
    id: Uuid,
    event: &'a str,
    #[serde(rename = "occurredAt")]
    occurred_at: String,
    data: &'a Value,
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` keyed with the webhook's secret.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs the delivery once; only a 2xx answer delivers it (redirects are not followed).
async fn attempt(state: &SharedState, delivery: &Claimed) -> AttemptResult {
    let failed = |status_code: Option<u16>, error: String| AttemptResult {
        delivered: false,
        status_code,
        error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
    };
    let url = match address::check_before_send(&state.config, &delivery.url) {
        Ok(url) => url,
        Err(refused) => return failed(None, refused),
    };
    let body = serde_json::to_vec(&Body {
        id: delivery.id,
        event: &delivery.event,
        occurred_at: delivery
            .created_at
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        data: &delivery.data,
    })
    .expect("a delivery serialises");
    let timestamp = Utc::now().timestamp();
    let sent = state
        .webhooks
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Tenantgraph-Event", &delivery.event)
        .header("X-Tenantgraph-Delivery", delivery.id.to_string())
        .header("X-Tenantgraph-Timestamp", timestamp.to_string())
        .header(
            "X-Tenantgraph-Signature",
            signature(delivery.secret.as_bytes(), timestamp, &body),
        )
        .body(body)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => AttemptResult {
            delivered: true,
            status_code: Some(response.status().as_u16()),
            error: None,
        },
        Ok(response) => {
            let status = response.status();
            failed(
                Some(status.as_u16()),
                format!("the receiver answered {status}"),
            )
        }
        Err(err) => failed(err.status().map(|s| s.as_u16()), describe(&err)),
    }
}

/// A send error with its causes (the resolver's refusal among them), without the URL.
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.replace(err.url().map(|url| url.as_str()).unwrap_or("\u{0}"), "")
}

/// Records an attempt, if the delivery is still this attempt's (its lease may have lapsed and
/// another server claimed it again, or its webhook was deleted meanwhile).
async fn record(
    state: &SharedState,
    delivery: &Claimed,
    result: &AttemptResult,
) -> Result<(), DbErr> {
    let config = &state.config;
    let status = if result.delivered {
        "DELIVERED"
    } else if delivery.attempts as u32 >= config.webhook_max_attempts {
        "FAILED"
    } else {
        "PENDING"
    };
    if !result.delivered {
        tracing::info!(
            delivery = %delivery.id,
            event = %delivery.event,
            attempts = delivery.attempts,
            status,
            error = result.error.as_deref().unwrap_or(""),
            "a webhook attempt failed"
        );
    }
    let retry_in = retry_delay(config, delivery.attempts as u32);
    state
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE public.webhook_deliveries \
                SET status = $3, last_status_code = $4, last_error = $5, \
                    next_attempt_at = now() + $6 * interval '1 millisecond', \
                    delivered_at = CASE WHEN $3 = 'DELIVERED' THEN now() END \
              WHERE id = $1 AND attempts = $2 AND status = 'PENDING'",
            [
                delivery.id.into(),
                delivery.attempts.into(),
                status.into(),
                result.status_code.map(i32::from).into(),
                result.error.clone().into(),
                (retry_in.as_millis() as i64).into(),
            ],
        ))
        .await?;
    Ok(())
}

/// The wait after the `attempts`-th failure: `WEBHOOK_RETRY_BASE_MS` doubled each time, at most
/// `WEBHOOK_RETRY_MAX_SECONDS`, with up to a tenth more at random so that retries of many
/// deliveries spread out.
pub fn retry_delay(config: &Config, attempts: u32) -> Duration {
    let doubled = config
        .webhook_retry_base
        .saturating_mul(1 << attempts.saturating_sub(1).min(30));
    let delay = doubled.min(config.webhook_retry_max);
    let jitter_ms = rand::random_range(0..=delay.as_millis() as u64 / 10);
    delay + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"Jefe", b'1700000000.{"a":1}', sha256).
        assert_eq!(
            signature(b"Jefe", 1_700_000_000, br#"{"a":1}"#),
            "sha256=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let config = Config::from_lookup(|name| match name {
            "WEBHOOK_RETRY_BASE_MS" => Some("1000".into()),
            "WEBHOOK_RETRY_MAX_SECONDS" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        let within = |attempts, low_ms: u64| {
            let delay = retry_delay(&config, attempts).as_millis() as u64;
            assert!(
                (low_ms..=low_ms + low_ms / 10).contains(&delay),
                "after {attempts} attempts: {delay} ms"
            );
        };
        within(1, 1000);
        within(2, 2000);
        within(3, 4000);
        within(4, 5000);
        within(40, 5000);
    }
}

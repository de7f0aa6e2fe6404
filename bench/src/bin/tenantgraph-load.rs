//! The load generator of the `query` benchmark, run as a process of its own so that the load
//! shares no runtime with the server (nor with the benchmark that starts both). Prints one JSON
//! line: `{"requests", "failed", "seconds", "p50_ms", "p99_ms"}`. All but `failed` are of the
//! measured part, which follows an unmeasured warm-up (`--warmup-millis`); `failed` counts the
//! warm-up's failures too. Both modes run on one thread, the HTTP
//! one over bare hyper connections, so that the generator takes as little as it can of the
//! cores the server and PostgreSQL share with it.
//!
//! - `tenantgraph-load http --url http://…/graphql --keys FILE`: POSTs `people(first: 20)`
//!   with a random tenant token of FILE (one a line) from each client, one HTTP/1.1
//!   connection per client, as fast as answered.
//! - `tenantgraph-load sql --url postgres://… --keys FILE`: the floor, one schema-qualified
//!   `SELECT … LIMIT 20` of a random schema of FILE per round trip, one connection per client.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::future::join_all;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Uri,
    client::conn::http1,
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use rand::seq::IndexedRandom;
use sea_orm::sqlx::{self, Connection, PgConnection};
use tenantgraph_bench::{LoadReport, PEOPLE_PAGE, PEOPLE_QUERY, percentiles};
use tokio::net::TcpStream;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Http,
    Sql,
}

#[derive(Parser)]
struct Cli {
    #[arg(value_enum)]
    mode: Mode,
    /// The GraphQL endpoint (`http`) or the database (`sql`).
    #[arg(long)]
    url: String,
    /// Tenant tokens (`http`) or schema names (`sql`), one a line.
    #[arg(long)]
    keys: PathBuf,
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long the load is measured, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    millis: u64,
    /// How long the load runs before it is measured, in milliseconds: every connection's
    /// plans are made (PostgreSQL plans a statement with parameters five times before it keeps
    /// one plan) and its caches filled, as on a server that has been up for a while.
    #[arg(long, default_value_t = 3_000)]
    warmup_millis: u64,
}

/// When the load runs and which part of it counts.
#[derive(Clone, Copy)]
struct Window {
    measured_from: Instant,
    until: Instant,
}

impl Window {
    fn new(warmup: Duration, measured: Duration) -> Self {
        let measured_from = Instant::now() + warmup;
        Window {
            measured_from,
            until: measured_from + measured,
        }
    }

    fn open(&self) -> bool {
        Instant::now() < self.until
    }

    /// Records how long a request sent at `sent` took, if it was sent in the measured part.
    fn record(&self, latencies: &mut Vec<Duration>, sent: Instant) {
        if sent >= self.measured_from {
            latencies.push(sent.elapsed());
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let keys: Vec<String> = std::fs::read_to_string(&cli.keys)
        .with_context(|| format!("reading {}", cli.keys.display()))?
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        bail!("{} names nothing to load", cli.keys.display());
    }
    let durations = (
        Duration::from_millis(cli.warmup_millis),
        Duration::from_millis(cli.millis),
    );
    let latencies = match cli.mode {
        Mode::Http => http_load(&cli.url, &keys, cli.clients, durations).await?,
        Mode::Sql => sql_load(&cli.url, &keys, cli.clients, durations).await?,
    };
    println!("{}", serde_json::to_string(&latencies)?);
    Ok(())
}

async fn http_load(
    url: &str,
    tokens: &[String],
    clients: usize,
    (warmup, measured): (Duration, Duration),
) -> anyhow::Result<LoadReport> {
    let url: Uri = url.parse().context("the GraphQL endpoint")?;
    let authority = url.authority().context("an endpoint with a host")?.clone();
    let body = Bytes::from(serde_json::json!({ "query": PEOPLE_QUERY }).to_string());
    // Every token's header value, made once: the load is the server's work, not ours.
    let bearers = tokens
        .iter()
        .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
        .collect::<Result<Vec<_>, _>>()
        .context("a token that fits in a header")?;
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = TcpStream::connect(authority.as_str()).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        connections.push(sender);
    }
    let window = Window::new(warmup, measured);
    let workers = connections.into_iter().map(|mut sender| {
        let (url, authority, body, bearers) = (&url, &authority, &body, &bearers);
        async move {
            let (mut latencies, mut failed) = (Vec::new(), 0u64);
            while window.open() {
                let bearer = bearers.choose(&mut rand::rng()).context("a token")?;
                let request = Request::post(url.path())
                    .header(HOST, authority.as_str())
                    .header(AUTHORIZATION, bearer)
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(body.clone()))?;
                let sent = Instant::now();
                let answer = sender
                    .send_request(request)
                    .await?
                    .into_body()
                    .collect()
                    .await?;
                let answer = answer.to_bytes();
                // A full page of people, not an error or an empty page: `"id":` comes only
                // with a person.
                if answer.windows(5).filter(|w| w == b"\"id\":").count() == PEOPLE_PAGE {
                    window.record(&mut latencies, sent);
                } else {
                    failed += 1;
                }
            }
            anyhow::Ok((latencies, failed))
        }
    });
    report(join_all(workers).await, window)
}

async fn sql_load(
    url: &str,
    schemas: &[String],
    clients: usize,
    (warmup, measured): (Duration, Duration),
) -> anyhow::Result<LoadReport> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(PgConnection::connect(url).await?);
    }
    let window = Window::new(warmup, measured);
    let workers = connections.into_iter().map(|mut connection| async move {
        let mut latencies = Vec::new();
        while window.open() {
            let schema = schemas.choose(&mut rand::rng()).context("a schema")?;
            let sent = Instant::now();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id, first_name, last_name FROM \"{schema}\".person \
                 ORDER BY created_at, id LIMIT 20"
            )))
            .fetch_all(&mut connection)
            .await?;
            window.record(&mut latencies, sent);
        }
        connection.close().await?;
        anyhow::Ok((latencies, 0))
    });
    report(join_all(workers).await, window)
}

fn report(
    workers: Vec<anyhow::Result<(Vec<Duration>, u64)>>,
    window: Window,
) -> anyhow::Result<LoadReport> {
    let seconds = window.measured_from.elapsed().as_secs_f64();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for worker in workers {
        let (worker_latencies, worker_failed) = worker?;
        latencies.extend(worker_latencies);
        failed += worker_failed;
    }
    let (p50_ms, p99_ms) = percentiles(&mut latencies);
    Ok(LoadReport {
        requests: latencies.len() as u64,
        failed,
        seconds,
        p50_ms,
        p99_ms,
    })
}

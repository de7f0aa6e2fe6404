//! The load generator of the `query` benchmark, run as a process of its own so that the load
//! shares no runtime with the server (nor with the benchmark that starts both). Prints one JSON
//! line: `{"requests", "failed", "seconds", "p50_ms", "p99_ms"}`.
//!
//! - `tenantgraph-load http --url http://…/graphql --keys FILE`: POSTs `people(first: 20)`
//!   with a random tenant token of FILE (one a line) from each client, as fast as answered.
//! - `tenantgraph-load sql --url postgres://… --keys FILE`: the floor, one schema-qualified
//!   `SELECT … LIMIT 20` of a random schema of FILE per round trip, one connection per client.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use futures_util::future::join_all;
use rand::seq::IndexedRandom;
use sea_orm::sqlx::{self, Connection, PgConnection};
use tenantgraph_bench::{LoadReport, PEOPLE_QUERY, percentiles};

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
    /// How long the load runs, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    millis: u64,
}

#[tokio::main]
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
    let duration = Duration::from_millis(cli.millis);
    let latencies = match cli.mode {
        Mode::Http => http_load(&cli.url, &keys, cli.clients, duration).await?,
        Mode::Sql => sql_load(&cli.url, &keys, cli.clients, duration).await?,
    };
    println!("{}", serde_json::to_string(&latencies)?);
    Ok(())
}

async fn http_load(
    url: &str,
    tokens: &[String],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let body = serde_json::json!({ "query": PEOPLE_QUERY }).to_string();
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = (0..clients).map(|_| {
        let (http, body) = (http.clone(), body.clone());
        async move {
            let (mut latencies, mut failed) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let token = tokens.choose(&mut rand::rng()).context("a token")?;
                let sent = Instant::now();
                let answer = http
                    .post(url)
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?
                    .bytes()
                    .await?;
                // A page of people, not an error: `"nodes"` comes only with data.
                if answer.windows(7).any(|w| w == b"\"nodes\"") {
                    latencies.push(sent.elapsed());
                } else {
                    failed += 1;
                }
            }
            anyhow::Ok((latencies, failed))
        }
    });
    report(join_all(workers).await, started)
}

async fn sql_load(
    url: &str,
    schemas: &[String],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<LoadReport> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(PgConnection::connect(url).await?);
    }
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let workers = connections.into_iter().map(|mut connection| async move {
        let mut latencies = Vec::new();
        while Instant::now() < deadline {
            let schema = schemas.choose(&mut rand::rng()).context("a schema")?;
            let sent = Instant::now();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id, first_name, last_name FROM \"{schema}\".person \
                 ORDER BY created_at, id LIMIT 20"
            )))
            .fetch_all(&mut connection)
            .await?;
            latencies.push(sent.elapsed());
        }
        connection.close().await?;
        anyhow::Ok((latencies, 0))
    });
    report(join_all(workers).await, started)
}

fn report(
    workers: Vec<anyhow::Result<(Vec<Duration>, u64)>>,
    started: Instant,
) -> anyhow::Result<LoadReport> {
    let seconds = started.elapsed().as_secs_f64();
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

//! `query`: the release server in a process of its own answers `people(first: 20)` with tenant
//! JWTs, driven by a load generator in another process (`tenantgraph-load`), against the floor
//! measured in the same run by the same generator: one schema-qualified `SELECT … LIMIT 20`
//! per round trip through a raw connection, at the same concurrency. A second server, reached
//! through a counting proxy, then shows how many round trips to PostgreSQL a request costs.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{Bench, OPERATOR_EMAIL, OPERATOR_PASSWORD, Row, post_json};

/// The document every query client sends.
pub const PEOPLE_QUERY: &str = "{ people(first: 20) { nodes { id firstName lastName } } }";
/// The people a page of [`PEOPLE_QUERY`] holds: tenants have more, so every page is full.
pub const PEOPLE_PAGE: usize = 20;
/// Tenants the load runs over, at most, and the people each holds.
pub(crate) const QUERY_TENANTS: usize = 100;
pub(crate) const PEOPLE_PER_TENANT: usize = 1000;
/// Requests sent one at a time through the counting proxy, after as many to warm up.
const COUNTED_REQUESTS: usize = 200;
const P99_TARGET_MS: f64 = 10.0;
const FLOOR_TARGET: f64 = 0.25;
const ROUND_TRIP_TARGET: f64 = 1.0;

/// The longest unmeasured load before a measured one.
const MAX_WARMUP: Duration = Duration::from_secs(3);
/// What `tenantgraph-load` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub requests: u64,
    pub failed: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl LoadReport {
    pub(crate) fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
}

impl Bench {
    /// `query`; see the module documentation.
    pub async fn query(
        &mut self,
        server_bin: &Path,
        load_bin: &Path,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        if !load_bin.is_file() {
            bail!(
                "no load generator at {} (build it with `cargo build --release --workspace`, or \
                 name it with --load-bin)",
                load_bin.display()
            );
        }
        let server = self.spawn_server(server_bin).await?;
        let operator = self
            .login_on(&server.base, None, OPERATOR_EMAIL, OPERATOR_PASSWORD)
            .await?;
        let count = self.options.tenants.clamp(1, QUERY_TENANTS);
        let (_, _, tenants) = self
            .provision_tenants_on(&server.base, &operator, "query", count, true, progress)
            .await?;
        let tokens = self
            .people_and_admin_tokens(&server, &tenants, PEOPLE_PER_TENANT)
            .await?;

        let dir = tempdir_for(&server.database_url);
        std::fs::create_dir_all(&dir)?;
        let (tokens_file, schemas_file) = (dir.join("tokens"), dir.join("schemas"));
        std::fs::write(&tokens_file, tokens.join("\n"))?;
        let schemas: Vec<&str> = tenants.iter().map(|(_, schema)| schema.as_str()).collect();
        std::fs::write(&schemas_file, schemas.join("\n"))?;

        let measured = async {
            let app = self
                .run_load(
                    load_bin,
                    "http",
                    &format!("{}/graphql", server.base),
                    &tokens_file,
                )
                .await?;
            let floor = self
                .run_load(load_bin, "sql", &server.database_url, &schemas_file)
                .await?;
            let trips = self
                .round_trips(server_bin, &server.database_url, &tokens[0])
                .await?;
            anyhow::Ok((app, floor, trips))
        }
        .await;
        std::fs::remove_dir_all(&dir).ok();
        let (app, floor, trips) = measured.map_err(|err| err.context(server.log_tail()))?;
        drop(server);

        let clients = self.options.clients;
        self.rows.push(
            Row::new(
                "query",
                &format!("req/s ({clients} clients, vs raw SELECT)"),
                app.rate(),
            )
            .against(floor.rate())
            .target(
                &format!("≥ {FLOOR_TARGET} × floor"),
                app.rate() >= FLOOR_TARGET * floor.rate(),
            ),
        );
        self.rows
            .push(Row::new("query", "p50 ms", app.p50_ms).against(floor.p50_ms));
        self.rows.push(
            Row::new("query", "p99 ms", app.p99_ms)
                .against(floor.p99_ms)
                .target(
                    &format!("≤ {P99_TARGET_MS} ms"),
                    app.p99_ms <= P99_TARGET_MS,
                ),
        );
        self.rows.push(
            Row::new("query", "failed requests", app.failed as f64).target("0", app.failed == 0),
        );
        self.rows.push(
            // Above the pin and the read: now and then a re-check of the session or the tenant
            // whose cached state expired (at most every 1.5 s per tenant).
            Row::new("query", "round trips per request, awaited", trips.awaited).target(
                &format!("{ROUND_TRIP_TARGET} (gated read) + re-checks"),
                trips.awaited.round() <= ROUND_TRIP_TARGET,
            ),
        );
        self.rows.push(Row::new(
            "query",
            "round trips per request, the pool's check on release",
            trips.release_checks,
        ));
        self.rows.push(Row::new(
            "query",
            "round trips per request, other",
            trips.other,
        ));
        Ok(())
    }

    /// Runs `tenantgraph-load <mode>` for this run's load length and clients, after a warm-up
    /// of a third of that (at most three seconds) that is not measured.
    pub(crate) async fn run_load(
        &self,
        load_bin: &Path,
        mode: &str,
        url: &str,
        keys: &Path,
    ) -> anyhow::Result<LoadReport> {
        let output = tokio::process::Command::new(load_bin)
            .arg(mode)
            .arg("--url")
            .arg(url)
            .arg("--keys")
            .arg(keys)
            .arg("--clients")
            .arg(self.options.clients.to_string())
            .arg("--millis")
            .arg(self.options.load.as_millis().to_string())
            .arg("--warmup-millis")
            .arg(
                (self.options.load / 3)
                    .min(MAX_WARMUP)
                    .as_millis()
                    .to_string(),
            )
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("starting {}", load_bin.display()))?;
        if !output.status.success() {
            bail!(
                "the {mode} load failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8(output.stdout)?;
        let report: LoadReport =
            serde_json::from_str(stdout.lines().last().context("the load's report")?)?;
        if report.requests == 0 {
            bail!("the {mode} load answered no request");
        }
        Ok(report)
    }

    /// Round trips to PostgreSQL per request: a second server on the same database, reached
    /// through a proxy that notes each time a connection speaks again after PostgreSQL
    /// answered, gets requests one at a time. The pool's check of a connection it takes back (a
    /// lone `Sync`, or a queued transaction end sent first thing) is counted apart: the answer
    /// does not wait for it, though it may overlap it. The others noted while a request waited
    /// for its answer are awaited.
    async fn round_trips(
        &self,
        server_bin: &Path,
        database_url: &str,
        token: &str,
    ) -> anyhow::Result<RoundTrips> {
        let mut url = reqwest::Url::parse(database_url)?;
        let target = format!(
            "{}:{}",
            url.host_str().context("a database host")?,
            url.port().unwrap_or(5432)
        );
        let counter = TurnCounter::start(target).await?;
        url.set_port(Some(counter.port))
            .map_err(|()| anyhow::anyhow!("a database URL with a port"))?;
        let server = self.spawn_server_on(server_bin, url).await?;
        let graphql = format!("{}/graphql", server.base);
        let body = json!({ "query": PEOPLE_QUERY });
        let mut windows = Vec::with_capacity(COUNTED_REQUESTS);
        for counted in [false, true] {
            if counted {
                // What the warm-up left in flight lands before counting starts.
                tokio::time::sleep(Duration::from_millis(100)).await;
                counter.take();
            }
            for _ in 0..COUNTED_REQUESTS {
                let sent = Instant::now();
                let answer = post_json(&self.http, &graphql, Some(token), &body).await?;
                let page = answer["data"]["people"]["nodes"].as_array().map(Vec::len);
                if page != Some(PEOPLE_PAGE) {
                    bail!("a counted request failed: {answer}");
                }
                windows.push((sent, Instant::now()));
                // Room for what follows the answer, before the next request.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !counted {
                windows.clear();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let turns = counter.take();
        drop(server);
        let requests = COUNTED_REQUESTS as f64;
        let during = |turn: &Turn| {
            windows
                .iter()
                .any(|(sent, answered)| *sent <= turn.at && turn.at <= *answered)
        };
        let awaited = turns
            .iter()
            .filter(|turn| !turn.release_check && during(turn))
            .count();
        let checks = turns.iter().filter(|turn| turn.release_check).count();
        Ok(RoundTrips {
            awaited: awaited as f64 / requests,
            release_checks: checks as f64 / requests,
            other: (turns.len() - awaited - checks) as f64 / requests,
        })
    }
}

/// Round trips per request (see [`Bench::round_trips`]).
struct RoundTrips {
    /// Sent while the request waited, other than a release check.
    awaited: f64,
    /// The pool's check of a connection it takes back (sqlx syncs with the server each time),
    /// with a transaction's end queued before it, if any.
    release_checks: f64,
    /// Between requests: other work of the server.
    other: f64,
}

pub(crate) fn tempdir_for(database_url: &str) -> PathBuf {
    let name = database_url.rsplit('/').next().unwrap_or("bench");
    std::env::temp_dir().join(format!("tenantgraph-load-{name}"))
}

/// A TCP proxy in front of PostgreSQL that notes the moments a client speaks again after the
/// server answered: one round trip each.
struct TurnCounter {
    port: u16,
    turns: Arc<Mutex<Vec<Turn>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TurnCounter {
    async fn start(target: String) -> anyhow::Result<TurnCounter> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let turns = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let turns = turns.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        continue;
                    };
                    tokio::spawn(relay(client, server, turns.clone()));
                }
            }
        });
        Ok(TurnCounter { port, turns, task })
    }

    /// The turns noted since the last call.
    fn take(&self) -> Vec<Turn> {
        std::mem::take(&mut *self.turns.lock().expect("turns lock"))
    }
}

impl Drop for TurnCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client speaking again after the server answered.
struct Turn {
    at: Instant,
    /// A lone `Sync`, or a `ROLLBACK` or `COMMIT` sent as a simple query first thing: the pool
    /// checking a connection it takes back.
    release_check: bool,
}

fn is_release_check(sent: &[u8]) -> bool {
    const SYNC: &[u8] = b"S\0\0\0\x04";
    sent == SYNC
        || sent.first() == Some(&b'Q')
            && sent
                .get(5..)
                .is_some_and(|text| text.starts_with(b"ROLLBACK") || text.starts_with(b"COMMIT"))
}

async fn relay(client: TcpStream, server: TcpStream, turns: Arc<Mutex<Vec<Turn>>>) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let answered = AtomicBool::new(true);
    let up = async {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = from_client.read(&mut buffer).await?;
            if read == 0 {
                return to_server.shutdown().await;
            }
            if answered.swap(false, Ordering::SeqCst) {
                let turn = Turn {
                    at: Instant::now(),
                    release_check: is_release_check(&buffer[..read]),
                };
                turns.lock().expect("turns lock").push(turn);
            }
            to_server.write_all(&buffer[..read]).await?;
        }
    };
    let down = async {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = from_server.read(&mut buffer).await?;
            if read == 0 {
                return to_client.shutdown().await;
            }
            answered.store(true, Ordering::SeqCst);
            to_client.write_all(&buffer[..read]).await?;
        }
    };
    let _: (std::io::Result<()>, std::io::Result<()>) = tokio::join!(up, down);
}

//! `server-memory`: the release server in a process of its own, its resident memory sampled from
//! `/proc/<pid>/status` every second while tenants with admins are provisioned (argon2id hashes
//! every admin's password) and then while a mixed load of queries and logins runs.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::future::join_all;
use rand::seq::IndexedRandom;
use sea_orm::ConnectionTrait;
use serde::Serialize;
use serde_json::{Value, json};
use tenantgraph::db;

use crate::{ADMIN_PASSWORD, Bench, OPERATOR_EMAIL, OPERATOR_PASSWORD, Row, post_json};

/// Tenants the load runs over, at most.
const LOAD_TENANTS: usize = 1000;
/// Concurrent clients of the mixed load: queries, and logins.
const QUERY_CLIENTS: usize = 8;
const LOGIN_CLIENTS: usize = 2;
const TARGET_MB: f64 = 100.0;

/// One sample of the server's resident memory.
#[derive(Debug, Clone, Serialize)]
pub struct RssSample {
    /// Seconds since the server process started.
    pub seconds: f64,
    pub rss_mb: f64,
    /// `start`, `provision`, `login` (tokens for the load) or `load`.
    pub phase: &'static str,
}

/// Requests of the mixed load that succeeded and failed.
#[derive(Default)]
struct Counts {
    ok: u64,
    failed: u64,
}

impl Counts {
    fn add(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
    }
}

/// What the mixed load achieved.
struct Load {
    queries_per_second: f64,
    logins_per_second: f64,
    failed: u64,
}

/// The server under test: its own process, killed when dropped.
pub(crate) struct ServerProcess {
    child: tokio::process::Child,
    pub(crate) pid: u32,
    pub(crate) base: String,
    pub(crate) database_url: String,
    data_dir: PathBuf,
}

impl ServerProcess {
    /// The end of the server's log, to explain a failure.
    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "the server's log ends:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        std::fs::remove_dir_all(&self.data_dir).ok();
    }
}

/// CPU time (user and system) process `pid` has used, in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds_of(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("a /proc stat line")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name and state.
    let ticks: f64 = fields
        .get(11..13)
        .context("utime and stime")?
        .iter()
        .map(|field| field.parse::<f64>())
        .sum::<Result<f64, _>>()?;
    // In USER_HZ, which Linux fixes at 100 for what it reports to user space.
    Ok(ticks / 100.0)
}

/// The resident set of process `pid` in MB, from `/proc/<pid>/status`.
pub fn rss_mb_of(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("VmRSS")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// Where the binary `name` of the workspace is: next to the running benchmark (all built by
/// `cargo build --release --workspace`), the server `tenantgraph` and the load generator
/// `tenantgraph-load` alike.
pub fn sibling_bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from("target/release").join(name))
}

/// Samples every second into a shared curve, under the phase currently set, until dropped.
struct Sampler {
    curve: Arc<Mutex<Vec<RssSample>>>,
    phase: Arc<Mutex<&'static str>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32, started: Instant) -> Sampler {
        let curve = Arc::new(Mutex::new(Vec::new()));
        let phase = Arc::new(Mutex::new("start"));
        let task = tokio::spawn({
            let (curve, phase) = (curve.clone(), phase.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Ok(rss_mb) = rss_mb_of(pid) else { return };
                    let phase = *phase.lock().expect("sampler lock");
                    curve.lock().expect("sampler lock").push(RssSample {
                        seconds: started.elapsed().as_secs_f64(),
                        rss_mb,
                        phase,
                    });
                }
            }
        });
        Sampler { curve, phase, task }
    }

    fn phase(&self, phase: &'static str) {
        *self.phase.lock().expect("sampler lock") = phase;
    }

    /// The curve so far, and the largest sample of `phase` (0 when none).
    fn peak(&self, phase: &str) -> f64 {
        self.curve
            .lock()
            .expect("sampler lock")
            .iter()
            .filter(|sample| sample.phase == phase)
            .map(|sample| sample.rss_mb)
            .fold(0.0, f64::max)
    }

    fn stop(self) -> Vec<RssSample> {
        self.task.abort();
        std::mem::take(&mut *self.curve.lock().expect("sampler lock"))
    }
}

impl Bench {
    /// Starts `server_bin` on a fresh database of this run's server, and waits until it answers.
    pub(crate) async fn spawn_server(&self, server_bin: &Path) -> anyhow::Result<ServerProcess> {
        let name = format!("bench_srv_{}", uuid::Uuid::new_v4().simple());
        let mut url = reqwest::Url::parse(&self.url)?;
        let mut maintenance = url.clone();
        maintenance.set_path("/postgres");
        db::create_database_if_missing(maintenance.as_str(), &name).await?;
        url.set_path(&format!("/{name}"));
        self.spawn_server_on(server_bin, url).await
    }

    /// Starts `server_bin` on the database at `url`, and waits until it answers.
    pub(crate) async fn spawn_server_on(
        &self,
        server_bin: &Path,
        url: reqwest::Url,
    ) -> anyhow::Result<ServerProcess> {
        if !server_bin.is_file() {
            bail!(
                "no server binary at {} (build it with `cargo build --release --workspace`, or name \
                 it with --server-bin)",
                server_bin.display()
            );
        }
        let name = format!("bench_srv_{}", uuid::Uuid::new_v4().simple());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data_dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&data_dir)?;
        let log = std::fs::File::create(data_dir.join("server.log"))?;
        let child = tokio::process::Command::new(server_bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", url.as_str())
            .env("DATA_DIR", &data_dir)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret-0123")
            .env("BOOTSTRAP_ADMIN_EMAIL", OPERATOR_EMAIL)
            .env("BOOTSTRAP_ADMIN_PASSWORD", OPERATOR_PASSWORD)
            .env(
                "DATABASE_MAX_CONNECTIONS",
                self.options.pool_size.to_string(),
            )
            .env("TENANT_RATE_LIMIT_PER_MINUTE", "1000000")
            .env("MAX_TENANTS_PER_BATCH", crate::CHUNK.to_string())
            .env("MAX_CONCURRENT_OPERATIONS", "2")
            .env("REQUEST_TIMEOUT_SECONDS", "600")
            .env("OPERATION_TIMEOUT_SECONDS", "600")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", server_bin.display()))?;
        let pid = child.id().context("the server's pid")?;
        let mut server = ServerProcess {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
            database_url: url.to_string(),
            data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = server.child.try_wait()? {
                let log =
                    std::fs::read_to_string(server.data_dir.join("server.log")).unwrap_or_default();
                bail!("the server exited ({status}) before answering: {log}");
            }
            let health = self
                .http
                .get(format!("{}/health", server.base))
                .send()
                .await;
            if health.is_ok_and(|response| response.status().is_success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /health within 2 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `server-memory`: the server's own RSS after `tenants` tenants with admins are provisioned
    /// and `memory_load` of queries and logins over up to 1,000 of them; returns the curve.
    pub async fn server_memory(
        &mut self,
        server_bin: &Path,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<Vec<RssSample>> {
        let started = Instant::now();
        let server = self.spawn_server(server_bin).await?;
        let sampler = Sampler::start(server.pid, started);
        let idle = rss_mb_of(server.pid)?;

        sampler.phase("provision");
        let operator = self
            .login_on(&server.base, None, OPERATOR_EMAIL, OPERATOR_PASSWORD)
            .await?;
        let n = self.options.tenants;
        let (_, _, tenants) = self
            .provision_tenants_on(&server.base, &operator, "rss", n, true, progress)
            .await?;
        let provisioned = rss_mb_of(server.pid)?;

        // Tokens of the tenants the load runs over, and 50 people in each.
        sampler.phase("login");
        let load_tenants = &tenants[..tenants.len().min(LOAD_TENANTS)];
        let tokens = self
            .people_and_admin_tokens(&server, load_tenants, 50)
            .await?;

        sampler.phase("load");
        let domains: Vec<String> = load_tenants.iter().map(|(d, _)| d.clone()).collect();
        let load = self
            .mixed_load(&server.base, tokens, domains, self.options.memory_load)
            .await
            .map_err(|err| err.context(server.log_tail()))?;
        let after = rss_mb_of(server.pid)?;
        let peak = sampler
            .peak("provision")
            .max(sampler.peak("login"))
            .max(sampler.peak("load"));
        let curve = sampler.stop();
        drop(server);

        let scenario = "server-memory";
        self.rows
            .push(Row::new(scenario, "server RSS MB, idle after start", idle));
        self.rows.push(Row::new(
            scenario,
            &format!("server RSS MB, {n} tenants with admins provisioned"),
            provisioned,
        ));
        self.rows.push(
            Row::new(
                scenario,
                &format!(
                    "server RSS MB after {} s of load",
                    self.options.memory_load.as_secs()
                ),
                after,
            )
            .target(&format!("≤ {TARGET_MB} MB"), after <= TARGET_MB),
        );
        self.rows
            .push(Row::new(scenario, "server RSS MB, peak of the run", peak));
        self.rows.push(Row::new(
            scenario,
            &format!("queries/s during the load ({QUERY_CLIENTS} clients)"),
            load.queries_per_second,
        ));
        self.rows.push(Row::new(
            scenario,
            &format!("logins/s during the load ({LOGIN_CLIENTS} clients)"),
            load.logins_per_second,
        ));
        self.rows.push(Row::new(
            scenario,
            "failed requests during the load",
            load.failed as f64,
        ));
        Ok(curve)
    }

    /// Gives each of `tenants` (domain, schema) `people` people, analysed so that plans are
    /// those of a live table, and logs its admin in; the admins' tokens, in order.
    pub(crate) async fn people_and_admin_tokens(
        &self,
        server: &ServerProcess,
        tenants: &[(String, String)],
        people: usize,
    ) -> anyhow::Result<Vec<String>> {
        let schemas: Vec<&str> = tenants.iter().map(|(_, schema)| schema.as_str()).collect();
        add_people(&server.database_url, &schemas, people).await?;
        let tokens = self.admin_tokens(&server.base, tenants).await?;
        settle_registry(&server.database_url).await?;
        Ok(tokens)
    }

    /// Logs the admin of each of `tenants` (domain, schema) in; their tokens, in order.
    pub(crate) async fn admin_tokens(
        &self,
        base: &str,
        tenants: &[(String, String)],
    ) -> anyhow::Result<Vec<String>> {
        let mut tokens = Vec::with_capacity(tenants.len());
        for (domain, _) in tenants {
            let admin = format!("admin@{domain}");
            tokens.push(
                self.login_on(base, Some(domain), &admin, ADMIN_PASSWORD)
                    .await?,
            );
        }
        Ok(tokens)
    }

    pub(crate) async fn login_on(
        &self,
        base: &str,
        tenant: Option<&str>,
        email: &str,
        password: &str,
    ) -> anyhow::Result<String> {
        let mut input = json!({ "email": email, "password": password });
        if let Some(tenant) = tenant {
            input["tenant"] = json!(tenant);
        }
        let data = self
            .graphql_on(
                base,
                "mutation($i: LoginInput!) { login(input: $i) { token } }",
                json!({ "i": input }),
                None,
            )
            .await?;
        Ok(data["login"]["token"]
            .as_str()
            .context("a token")?
            .to_owned())
    }

    /// Queries (`me` and a page of people) from eight clients and logins from two,
    /// with random tenants, for `duration`.
    async fn mixed_load(
        &self,
        base: &str,
        tokens: Vec<String>,
        domains: Vec<String>,
        duration: Duration,
    ) -> anyhow::Result<Load> {
        let deadline = Instant::now() + duration;
        let url = format!("{base}/graphql");
        let tokens = Arc::new(tokens);
        let domains = Arc::new(domains);
        let queries = (0..QUERY_CLIENTS).map(|_| {
            let (http, url, tokens) = (self.http.clone(), url.clone(), tokens.clone());
            async move {
                let body = json!({ "query": "{ me { kind } people(first: 20) { nodes { id firstName lastName } } }" });
                let mut counts = Counts::default();
                while Instant::now() < deadline {
                    let token = tokens.choose(&mut rand::rng()).cloned().unwrap_or_default();
                    let response = post_json(&http, &url, Some(&token), &body).await?;
                    counts.add(response.get("errors").is_none_or(Value::is_null));
                }
                anyhow::Ok(counts)
            }
        });
        let logins = (0..LOGIN_CLIENTS).map(|_| {
            let (http, url, domains) = (self.http.clone(), url.clone(), domains.clone());
            async move {
                let mut counts = Counts::default();
                while Instant::now() < deadline {
                    let domain = domains.choose(&mut rand::rng()).cloned().unwrap_or_default();
                    let body = json!({
                        "query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
                        "variables": { "i": { "email": format!("admin@{domain}"), "password": ADMIN_PASSWORD, "tenant": domain } }
                    });
                    let response = post_json(&http, &url, None, &body).await?;
                    counts.add(response["data"]["login"]["token"].is_string());
                }
                anyhow::Ok(counts)
            }
        });
        let started = Instant::now();
        let (queries, logins) = tokio::join!(join_all(queries), join_all(logins));
        let seconds = started.elapsed().as_secs_f64();
        let total = |clients: Vec<anyhow::Result<Counts>>| -> anyhow::Result<Counts> {
            let mut total = Counts::default();
            for client in clients {
                let client = client?;
                total.ok += client.ok;
                total.failed += client.failed;
            }
            Ok(total)
        };
        let (queries, logins) = (total(queries)?, total(logins)?);
        if queries.ok == 0 || logins.ok == 0 {
            bail!("no query or no login of the load succeeded");
        }
        Ok(Load {
            queries_per_second: queries.ok as f64 / seconds,
            logins_per_second: logins.ok as f64 / seconds,
            failed: queries.failed + logins.failed,
        })
    }
}

/// Gives each schema of the database at `database_url` `people` people, vacuumed and analysed
/// so that a timed load meets settled tables: no hint bits left to set, and no automatic
/// `ANALYZE` in the middle of the load (it would make every connection plan that table's
/// statements again).
pub(crate) async fn add_people(
    database_url: &str,
    schemas: &[&str],
    people: usize,
) -> anyhow::Result<()> {
    let pool = db::open_pool(database_url, 2).await?;
    for schema in schemas {
        pool.execute_unprepared(&format!(
            "INSERT INTO \"{schema}\".person (first_name, last_name, email) \
             SELECT 'First' || i, 'Last' || i, 'p' || i || '@example.org' \
               FROM generate_series(1, {people}) i"
        ))
        .await?;
    }
    // A backend reports the rows it wrote to the statistics a while after it wrote them (at
    // the latest when it exits); a table counts as settled once the statistics show nothing
    // written since its last VACUUM and ANALYZE.
    pool.close().await?;
    let pool = db::open_pool(database_url, 1).await?;
    let mut unsettled: Vec<String> = schemas.iter().map(|schema| schema.to_string()).collect();
    for _ in 0..50 {
        for schema in &unsettled {
            pool.execute_unprepared(&format!("VACUUM (ANALYZE) \"{schema}\".person"))
                .await?;
        }
        let rows = pool
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT schemaname FROM pg_stat_user_tables WHERE relname = 'person' \
                 AND (n_mod_since_analyze > 0 OR n_ins_since_vacuum > 0)",
            ))
            .await?;
        unsettled = rows
            .iter()
            .map(|row| row.try_get::<String>("", "schemaname"))
            .collect::<Result<_, _>>()?;
        unsettled.retain(|schema| schemas.contains(&schema.as_str()));
        if unsettled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pool.close().await?;
    anyhow::ensure!(
        unsettled.is_empty(),
        "the statistics never settled for {unsettled:?}"
    );
    Ok(())
}

/// Vacuums and analyses the registry's tables (`public`), as autovacuum does a while after
/// provisioning: the rows just written by it and by the logins are left as dead versions, and
/// every ownership check would visit them until then.
async fn settle_registry(database_url: &str) -> anyhow::Result<()> {
    let pool = db::open_pool(database_url, 1).await?;
    let tables = pool
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables \
             WHERE schemaname = 'public'",
        ))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect::<Result<Vec<_>, _>>()?;
    pool.execute_unprepared(&format!("VACUUM (ANALYZE) {}", tables.join(", ")))
        .await?;
    pool.close().await?;
    Ok(())
}

/// The curve as a table: one row every `every` seconds, and the last sample.
pub fn curve_table(curve: &[RssSample], every: f64) -> String {
    let mut out = String::from(
        "| seconds | phase     | server RSS MB |\n|--------:|-----------|--------------:|\n",
    );
    let mut next = 0.0;
    for (i, sample) in curve.iter().enumerate() {
        if sample.seconds >= next || i + 1 == curve.len() {
            out.push_str(&format!(
                "| {:>7.0} | {:<9} | {:>13.1} |\n",
                sample.seconds, sample.phase, sample.rss_mb
            ));
            next = sample.seconds + every;
        }
    }
    out
}

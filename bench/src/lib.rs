//! The tenantgraph benchmark suite. Each scenario drives a real server over HTTP, as a client
//! would, and measures its baseline — what PostgreSQL itself does for the same work — in the
//! same run, so that the ratio travels between machines.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::future::join_all;
use rand::seq::IndexedRandom;
use sea_orm::{
    ConnectionTrait, DbBackend, Statement,
    sqlx::{self, Connection, PgConnection},
};
use serde::Serialize;
use serde_json::{Value, json};
use tenantgraph::{
    config::Config,
    db::{
        self,
        embedded::{EmbeddedOptions, EmbeddedPostgres, find_server_binaries},
    },
    startup::{Application, Spawned},
    state::SharedState,
};

mod query;
mod server_memory;
mod servers;

pub use query::{LoadReport, PEOPLE_PAGE, PEOPLE_QUERY};
pub use server_memory::{RssSample, curve_table, rss_mb_of, sibling_bin};

const OPERATOR_EMAIL: &str = "bench@tenantgraph.bench";
const OPERATOR_PASSWORD: &str = "bench-operator-password";
const ADMIN_PASSWORD: &str = "bench-tenant-admin";
/// The servers' pool unless `--pool-size` says otherwise.
pub const POOL_SIZE: u32 = 20;
/// Tenants per `provisionTenants` call.
const CHUNK: usize = 50;
/// Tenants a fleet migration works on at once (each over its own connection).
const FLEET_CONCURRENCY: usize = 8;

/// What a run measures.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tenants provisioned without an admin user.
    pub tenants: usize,
    /// Tenants provisioned with one (argon2id hashes each admin's password).
    pub admins: usize,
    /// Length of each timed load.
    pub load: Duration,
    /// Concurrent clients of the query load.
    pub clients: usize,
    /// Tenants registered (without schemas) for the memory scenario.
    pub registered: usize,
    /// Length of the mixed load of `server-memory`.
    pub memory_load: Duration,
    /// Whether `provision` replays its baseline (about 2 MB of disk per tenant: a run of
    /// 10,000 tenants needs some 40 GB with it).
    pub baseline: bool,
    /// Tenants of each kind the `clone` scenario makes.
    pub clones: usize,
    /// The servers' `DATABASE_MAX_CONNECTIONS`.
    pub pool_size: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tenants: 200,
            admins: 100,
            load: Duration::from_secs(10),
            clients: 16,
            registered: 10_000,
            memory_load: Duration::from_secs(60),
            baseline: true,
            clones: 20,
            pool_size: POOL_SIZE,
        }
    }
}

/// One line of the result table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub tenantgraph: f64,
    pub baseline: Option<f64>,
    /// tenantgraph / baseline (higher is better for rates, lower for times).
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
}

impl Row {
    fn new(scenario: &str, metric: &str, value: f64) -> Self {
        Row {
            scenario: scenario.into(),
            metric: metric.into(),
            tenantgraph: value,
            baseline: None,
            ratio: None,
            target: String::new(),
            met: None,
        }
    }

    fn against(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self.ratio = Some(self.tenantgraph / baseline);
        self
    }

    fn target(mut self, target: &str, met: bool) -> Self {
        self.target = target.into();
        self.met = Some(met);
        self
    }
}

/// A server under test and what the scenarios share.
pub struct Bench {
    pub rows: Vec<Row>,
    options: Options,
    state: SharedState,
    base: String,
    http: reqwest::Client,
    operator: String,
    url: String,
    cluster: Option<EmbeddedPostgres>,
    data_dir: Option<PathBuf>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// (domain, schema) of the tenants provisioned without and with an admin user.
    plain: Vec<(String, String)>,
    with_admin: Vec<(String, String)>,
    tokens: Vec<String>,
}

impl Bench {
    /// Starts a fresh embedded cluster (or a fresh database on `DATABASE_URL`) and the server.
    pub async fn start(options: Options) -> anyhow::Result<Bench> {
        let (url, cluster, data_dir) = match std::env::var("DATABASE_URL") {
            Ok(url) => {
                let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
                db::create_database_if_missing(&url, &name).await?;
                let mut parsed = reqwest::Url::parse(&url)?;
                parsed.set_path(&name);
                (parsed.to_string(), None, None)
            }
            Err(_) => {
                let dir = std::env::temp_dir().join(format!(
                    "tenantgraph-bench-{}",
                    uuid::Uuid::new_v4().simple()
                ));
                let cluster = EmbeddedPostgres::start(EmbeddedOptions {
                    data_dir: dir.clone(),
                    pg_bin: std::env::var_os("PG_BIN").map(Into::into),
                })
                .await?;
                db::create_database_if_missing(&cluster.url("postgres"), "bench").await?;
                (cluster.url("bench"), Some(cluster), Some(dir))
            }
        };
        let env: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", url.clone()),
            ("BIND_ADDR", "127.0.0.1:0".into()),
            (
                "JWT_SECRET",
                "bench-secret-bench-secret-bench-secret-0123".into(),
            ),
            ("BOOTSTRAP_ADMIN_EMAIL", OPERATOR_EMAIL.into()),
            ("BOOTSTRAP_ADMIN_PASSWORD", OPERATOR_PASSWORD.into()),
            ("DATABASE_MAX_CONNECTIONS", options.pool_size.to_string()),
            // Provisioning goes in chunks of CHUNK; the fleet migrations take every tenant in one
            // batch, which the server holds to this limit too.
            ("MAX_TENANTS_PER_BATCH", "10000".into()),
            // Provisioning asks for 2 at a time; fleet migrations for FLEET_CONCURRENCY.
            ("MAX_CONCURRENT_OPERATIONS", FLEET_CONCURRENCY.to_string()),
            ("REQUEST_TIMEOUT_SECONDS", "600".into()),
            ("OPERATION_TIMEOUT_SECONDS", "600".into()),
            // The load is many times one real tenant's: the buckets are still checked.
            ("TENANT_RATE_LIMIT_PER_MINUTE", "1000000".into()),
        ]);
        let config = Config::from_lookup(|name| env.get(name).cloned())?;
        let Spawned {
            address,
            state,
            task: server,
        } = Application::build(config).await?.spawn();
        let base = format!("http://{address}");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        let mut bench = Bench {
            rows: Vec::new(),
            options,
            state,
            base,
            http,
            operator: String::new(),
            url,
            cluster,
            data_dir,
            server,
            plain: Vec::new(),
            with_admin: Vec::new(),
            tokens: Vec::new(),
        };
        let login = bench
            .graphql(
                "mutation($i: LoginInput!) { login(input: $i) { token } }",
                json!({ "i": { "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD } }),
                None,
            )
            .await?;
        bench.operator = login["login"]["token"]
            .as_str()
            .context("operator login")?
            .into();
        Ok(bench)
    }

    /// Stops the server and the cluster this run started.
    pub async fn finish(self) -> anyhow::Result<Vec<Row>> {
        self.server.abort();
        if let Some(cluster) = self.cluster {
            cluster.stop().await?;
        }
        if let Some(dir) = self.data_dir {
            std::fs::remove_dir_all(dir).ok();
        }
        Ok(self.rows)
    }

    async fn graphql(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> anyhow::Result<Value> {
        self.graphql_on(&self.base, query, variables, token).await
    }

    /// A GraphQL operation on the server at `base`; its `data`, or an error naming its errors.
    async fn graphql_on(
        &self,
        base: &str,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body: Value = request.send().await?.json().await?;
        if let Some(errors) = body.get("errors").filter(|e| !e.is_null()) {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body["data"].clone())
    }

    async fn sql_one(&self, sql: &str) -> anyhow::Result<f64> {
        let row = self
            .state
            .db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?
            .context("a row")?;
        Ok(row.try_get_by_index::<Option<f64>>(0)?.unwrap_or(0.0))
    }

    /// `provision`: tenants through `provisionTenants`, without and with an admin user, against
    /// the same final DDL replayed as one script per schema.
    pub async fn provision(&mut self, progress: &indicatif::ProgressBar) -> anyhow::Result<()> {
        let n = self.options.tenants;
        let (plain_rate, plain_batches, plain) =
            self.provision_tenants("plain", n, false, progress).await?;
        self.plain = plain;
        let admins = self.options.admins.max(1);
        let (admin_rate, _, with_admin) = self
            .provision_tenants("staffed", admins, true, progress)
            .await?;
        self.with_admin = with_admin;

        let plain_row = Row::new("provision", "tenants/s (no admin)", plain_rate);
        let admin_row = Row::new("provision", "tenants/s (with admin, argon2id)", admin_rate);
        if self.options.baseline {
            let baseline = self.replay_baseline(n).await?;
            self.rows.push(
                plain_row
                    .against(baseline)
                    .target("≥ 0.5 × baseline", plain_rate >= 0.5 * baseline),
            );
            self.rows.push(admin_row.against(baseline));
        } else {
            self.rows.push(plain_row);
            self.rows.push(admin_row);
        }

        // Per-step times from the batches' own events, once the background writer stored each
        // batch's final event.
        let ids = plain_batches
            .iter()
            .map(|id| format!("'{id}'"))
            .collect::<Vec<_>>()
            .join(",");
        for _ in 0..100 {
            let stored = self
                .sql_one(&format!(
                    "SELECT count(*)::float8 FROM public.provisioning_events \
                      WHERE batch_id IN ({ids}) AND tenant_name IS NULL AND step = 'DONE'"
                ))
                .await?;
            if stored as usize == plain_batches.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let steps = self
            .state
            .db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "WITH spans AS ( \
                       SELECT tenant_name, step, \
                              extract(epoch FROM max(at) FILTER (WHERE status = 'SUCCEEDED') \
                                               - min(at) FILTER (WHERE status = 'STARTED')) * 1000 AS ms \
                         FROM public.provisioning_events WHERE batch_id IN ({ids}) AND tenant_name IS NOT NULL \
                        GROUP BY tenant_name, step) \
                     SELECT step, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, \
                            percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95 \
                       FROM spans WHERE ms IS NOT NULL GROUP BY step ORDER BY p50 DESC"
                ),
            ))
            .await?;
        for row in steps {
            let step: String = row.try_get("", "step")?;
            let p50: f64 = row.try_get("", "p50")?;
            let p95: f64 = row.try_get("", "p95")?;
            self.rows
                .push(Row::new("provision", &format!("{step} p50 ms"), p50));
            self.rows
                .push(Row::new("provision", &format!("{step} p95 ms"), p95));
        }
        if n >= 300 {
            // Catalog growth: does a tenant cost more once many schemas exist? The first 100
            // warm the server up; the next 100 are the reference.
            let mean_of = |order: &str, offset: usize| {
                format!(
                    "SELECT avg(duration_ms)::float8 FROM (SELECT duration_ms FROM public.provisioning_jobs \
                      WHERE tenant_name LIKE 'plain-%' ORDER BY started_at {order} \
                      OFFSET {offset} LIMIT 100) edge"
                )
            };
            let first = self.sql_one(&mean_of("ASC", 0)).await?;
            let warm = self.sql_one(&mean_of("ASC", 100)).await?;
            let last = self.sql_one(&mean_of("DESC", 0)).await?;
            self.rows
                .push(Row::new("provision", "mean ms, first 100 tenants", first));
            self.rows.push(Row::new(
                "provision",
                "mean ms, tenants 101-200 (after warm-up)",
                warm,
            ));
            self.rows.push(
                Row::new("provision", "mean ms, last 100 tenants", last)
                    .against(warm)
                    .target("≤ 1.2 ×", last <= 1.2 * warm),
            );
            // Which steps grow: each step's mean over the last 100 against tenants 101-200.
            let by_step = self
                .state
                .db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!(
                        "WITH jobs AS ( \
                           SELECT tenant_name, row_number() OVER (ORDER BY started_at) AS k, \
                                  count(*) OVER () AS n \
                             FROM public.provisioning_jobs WHERE tenant_name LIKE 'plain-%'), \
                         spans AS ( \
                           SELECT tenant_name, step, \
                                  extract(epoch FROM max(at) FILTER (WHERE status = 'SUCCEEDED') \
                                                   - min(at) FILTER (WHERE status = 'STARTED')) * 1000 AS ms \
                             FROM public.provisioning_events WHERE batch_id IN ({ids}) AND tenant_name IS NOT NULL \
                            GROUP BY tenant_name, step) \
                         SELECT step, avg(ms) FILTER (WHERE k BETWEEN 101 AND 200)::float8 AS warm, \
                                avg(ms) FILTER (WHERE k > n - 100)::float8 AS last \
                           FROM spans JOIN jobs USING (tenant_name) \
                          GROUP BY step ORDER BY step"
                    ),
                ))
                .await?;
            for row in by_step {
                let step: String = row.try_get("", "step")?;
                let (Some(warm), Some(last)) = (
                    row.try_get::<Option<f64>>("", "warm")?,
                    row.try_get::<Option<f64>>("", "last")?,
                ) else {
                    continue;
                };
                self.rows.push(
                    Row::new("provision", &format!("{step} mean ms, last 100"), last).against(warm),
                );
            }
        }
        Ok(())
    }

    /// Provisions `n` tenants in batches; returns tenants/s, the batch ids, and what was made.
    async fn provision_tenants(
        &self,
        prefix: &str,
        n: usize,
        with_admin: bool,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<(f64, Vec<String>, Vec<(String, String)>)> {
        self.provision_tenants_on(&self.base, &self.operator, prefix, n, with_admin, progress)
            .await
    }

    /// [`Bench::provision_tenants`] on the server at `base`, as the operator of `operator`.
    async fn provision_tenants_on(
        &self,
        base: &str,
        operator: &str,
        prefix: &str,
        n: usize,
        with_admin: bool,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<(f64, Vec<String>, Vec<(String, String)>)> {
        let started = Instant::now();
        let mut batches = Vec::new();
        let mut made = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(CHUNK) {
            let tenants: Vec<Value> = chunk
                .iter()
                .map(|i| {
                    let domain = format!("{prefix}-{i}.bench");
                    let mut tenant = json!({ "tenantName": domain, "domain": domain, "email": format!("office@{domain}") });
                    if with_admin {
                        tenant["admin"] = json!({ "email": format!("admin@{domain}"), "password": ADMIN_PASSWORD });
                    }
                    tenant
                })
                .collect();
            let data = self
                .graphql_on(
                    base,
                    "mutation($t: [CreateTenantInput!]!) { provisionTenants(tenants: $t, options: { wait: true, maxConcurrency: 2 }) { id status results { domain schemaName status } } }",
                    json!({ "t": tenants }),
                    Some(operator),
                )
                .await?;
            let batch = &data["provisionTenants"];
            if batch["status"] != "SUCCEEDED" {
                bail!("a provisioning batch did not succeed: {batch}");
            }
            batches.push(batch["id"].as_str().unwrap_or_default().to_owned());
            for result in batch["results"].as_array().into_iter().flatten() {
                made.push((
                    result["domain"].as_str().unwrap_or_default().to_owned(),
                    result["schemaName"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            progress.inc(chunk.len() as u64);
        }
        Ok((n as f64 / started.elapsed().as_secs_f64(), batches, made))
    }

    /// The same final schema as `pg_dump` sees it, replayed as one script per new schema.
    async fn replay_baseline(&self, n: usize) -> anyhow::Result<f64> {
        let template = self
            .plain
            .first()
            .map(|(_, s)| s.clone())
            .context("a provisioned schema")?;
        let bin = find_server_binaries(
            std::env::var_os("PG_BIN")
                .as_deref()
                .map(std::path::Path::new),
        )
        .await?;
        // The password goes in the environment, where `ps` does not show it.
        let mut target = reqwest::Url::parse(&self.url)?;
        let password = target.password().unwrap_or_default().to_owned();
        target.set_password(None).ok();
        let dump = tokio::process::Command::new(bin.join("pg_dump"))
            .env("PGPASSWORD", password)
            .args([
                "--schema",
                &template,
                // Data as multi-row INSERTs: the whole script is one batch of plain SQL.
                "--rows-per-insert=1000",
                "--no-owner",
                "--no-privileges",
                "--no-comments",
                target.as_str(),
            ])
            .output()
            .await?;
        if !dump.status.success() {
            bail!("pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
        }
        // Keep the DDL and the data; drop session settings and psql meta-commands.
        let script: String = String::from_utf8(dump.stdout)?
            .lines()
            .filter(|line| {
                !line.starts_with("SET ")
                    && !line.starts_with("SELECT pg_catalog.set_config")
                    && !line.starts_with('\\')
                    && !line.starts_with("--")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut connection = PgConnection::connect(&self.url).await?;
        let started = Instant::now();
        for i in 0..n {
            let schema = format!("baseline_{i}");
            let sql = format!("BEGIN;\n{}\nCOMMIT;", script.replace(&template, &schema));
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut connection)
                .await?;
        }
        let rate = n as f64 / started.elapsed().as_secs_f64();
        for i in 0..n {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA baseline_{i} CASCADE"
            )))
            .execute(&mut connection)
            .await?;
        }
        connection.close().await?;
        Ok(rate)
    }

    /// `migrate-noop`: a fleet migration to head with nothing to do.
    pub async fn migrate_noop(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        self.graphql("mutation { migrateTenants(options: { wait: true }) { status summary { totalRequested } } }", json!({}), Some(&self.operator))
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let tenants = self.plain.len() + self.with_admin.len();
        self.rows.push(
            Row::new(
                "migrate-noop",
                &format!("seconds over {tenants} tenants"),
                seconds,
            )
            .target("< 1 s at 1,000 tenants", seconds < 1.0),
        );
        Ok(())
    }

    /// `migrate`: the newest tenant migration (a nullable column and an index on `person`) over
    /// every tenant, against the same two statements per schema over one connection. Measured
    /// twice: as a deploy that adds a migration meets the fleet (every tenant active, one step
    /// behind head), and bringing back a fleet that was stepped down (every tenant parked, so
    /// each one's return is also announced to every server: a `NOTIFY` per tenant, which
    /// PostgreSQL takes one at a time at commit).
    pub async fn migrate(&mut self) -> anyhow::Result<()> {
        let names = migration::tenant_migration_names();
        let previous = &names[names.len() - 2];
        let tenants = (self.plain.len() + self.with_admin.len()) as f64;

        self.fleet_to(previous).await?;
        let (unparking_seconds, _) = self.fleet_to("head").await?;
        self.fleet_to(previous).await?;
        // A deploy finds its tenants at the revision they were at, active: what stepping down
        // parked is let back in, as if the newest migration had just been added.
        self.state
            .db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE public.tenants SET status = 'ACTIVE', failure_reason = NULL \
                 WHERE starts_with(failure_reason, $1)",
                [tenantgraph::tenancy::guard::BELOW_HEAD.into()],
            ))
            .await?;
        let (seconds, statements) = self.fleet_to("head").await?;
        let rate = tenants / seconds;
        let unparked = tenants / unparking_seconds;
        let statements = statements as f64 / tenants;

        let mut connection = PgConnection::connect(&self.url).await?;
        let schemas: Vec<String> = self
            .plain
            .iter()
            .chain(&self.with_admin)
            .map(|(_, s)| s.clone())
            .collect();
        let started = Instant::now();
        for schema in &schemas {
            // The schema names are the ones this run provisioned.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "BEGIN; ALTER TABLE \"{schema}\".person ADD COLUMN bench_col text; \
                 CREATE INDEX ON \"{schema}\".person (bench_col); COMMIT;"
            )))
            .execute(&mut connection)
            .await?;
        }
        let baseline = schemas.len() as f64 / started.elapsed().as_secs_f64();
        for schema in &schemas {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE \"{schema}\".person DROP COLUMN bench_col"
            )))
            .execute(&mut connection)
            .await?;
        }
        connection.close().await?;
        self.rows.push(
            Row::new("migrate", "tenants/s (active, one step behind)", rate)
                .against(baseline)
                .target("≥ 0.5 × baseline", rate >= 0.5 * baseline),
        );
        self.rows.push(
            Row::new("migrate", "tenants/s (parked, back to head)", unparked).against(baseline),
        );
        // The server's statements (each a round trip; `BEGIN` and `COMMIT` of SeaORM's own
        // transactions are not counted), the batch's bookkeeping included.
        self.rows.push(Row::new(
            "migrate",
            "database statements per tenant",
            statements,
        ));
        Ok(())
    }

    /// Migrates every tenant to `revision` in one batch (confirmed, for a step below head);
    /// its seconds and the database statements the server sent meanwhile.
    async fn fleet_to(&self, revision: &str) -> anyhow::Result<(f64, u64)> {
        let fleet = format!(
            "mutation($to: String!) {{ migrateTenants(targetRevision: $to, confirm: $to, options: {{ wait: true, maxConcurrency: {FLEET_CONCURRENCY} }}) {{ status summary {{ successful }} }} }}"
        );
        let statements = self.state.metrics.db_statements();
        let started = Instant::now();
        let done = self
            .graphql(&fleet, json!({ "to": revision }), Some(&self.operator))
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        if done["migrateTenants"]["status"] != "SUCCEEDED" {
            bail!("the fleet migration to {revision} did not succeed: {done}");
        }
        Ok((seconds, self.state.metrics.db_statements() - statements))
    }

    /// `clone`: `cloneTenant` of one provisioned tenant, its structure only and with its 1,000
    /// people, against `createTenant` (a schema made by migrations) — all one at a time, over
    /// HTTP, in this run.
    pub async fn clone_tenants(&mut self) -> anyhow::Result<()> {
        let n = self.options.clones.max(1);
        let mut source = bench_tenant("clone-source.bench");
        source["admin"] =
            json!({ "email": "admin@clone-source.bench", "password": ADMIN_PASSWORD });
        let made = self
            .graphql(
                "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { id schemaName } } }",
                json!({ "i": source }),
                Some(&self.operator),
            )
            .await?;
        let source_id = made["createTenant"]["tenant"]["id"].clone();
        let schema = made["createTenant"]["tenant"]["schemaName"]
            .as_str()
            .context("the source's schema")?
            .to_owned();
        self.state
            .db
            .execute_unprepared(&format!(
                "INSERT INTO \"{schema}\".person (first_name, last_name, email) \
                 SELECT 'First' || i, 'Last' || i, 'p' || i || '@example.org' FROM generate_series(1, 1000) i"
            ))
            .await?;

        let migrated = self.one_by_one("migrated", n, None).await?;
        let structure = self
            .one_by_one("cloned", n, Some((&source_id, false)))
            .await?;
        let with_data = self
            .one_by_one("cloned-data", n, Some((&source_id, true)))
            .await?;
        self.rows.push(Row::new(
            "clone",
            &format!("tenants/s by migrations (createTenant, {n})"),
            migrated,
        ));
        self.rows
            .push(Row::new("clone", "tenants/s, clone of structure", structure).against(migrated));
        self.rows.push(
            Row::new("clone", "tenants/s, clone with 1,000 people", with_data).against(migrated),
        );
        Ok(())
    }

    /// `n` tenants `{prefix}-{i}.bench` made one after the other, by `createTenant` or as
    /// clones of `(source id, with its data)`; tenants/s.
    async fn one_by_one(
        &self,
        prefix: &str,
        n: usize,
        clone_of: Option<(&Value, bool)>,
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        for i in 0..n {
            let input = bench_tenant(&format!("{prefix}-{i}.bench"));
            let (operation, query, variables) = match clone_of {
                None => (
                    "createTenant",
                    "mutation($i: CreateTenantInput!) { createTenant(input: $i) { tenant { status } } }",
                    json!({ "i": input }),
                ),
                Some((source, with_data)) => (
                    "cloneTenant",
                    "mutation($s: ID!, $i: CreateTenantInput!, $d: Boolean) { cloneTenant(sourceTenantId: $s, input: $i, includeData: $d) { tenant { status } } }",
                    json!({ "s": source, "i": input, "d": with_data }),
                ),
            };
            let data = self.graphql(query, variables, Some(&self.operator)).await?;
            if data[operation]["tenant"]["status"] != "ACTIVE" {
                bail!("{prefix}-{i} is not active: {data}");
            }
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }

    /// Logs in to every staffed tenant and gives each 50 people.
    async fn prepare_query_tenants(&mut self) -> anyhow::Result<()> {
        if !self.tokens.is_empty() {
            return Ok(());
        }
        for (domain, schema) in &self.with_admin {
            self.state
                .db
                .execute_unprepared(&format!(
                    "INSERT INTO \"{schema}\".person (first_name, last_name, email) \
                     SELECT 'First' || i, 'Last' || i, 'p' || i || '@example.org' FROM generate_series(1, 50) i"
                ))
                .await?;
            let login = self
                .graphql(
                    "mutation($i: LoginInput!) { login(input: $i) { token } }",
                    json!({ "i": { "email": format!("admin@{domain}"), "password": ADMIN_PASSWORD, "tenant": domain } }),
                    None,
                )
                .await?;
            self.tokens.push(
                login["login"]["token"]
                    .as_str()
                    .context("token")?
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// Concurrent `people(first: 20)` requests with random tenants' tokens for `duration`.
    async fn people_load(&self, duration: Duration) -> anyhow::Result<(f64, f64, f64)> {
        let deadline = Instant::now() + duration;
        let tokens = Arc::new(self.tokens.clone());
        let workers = (0..self.options.clients).map(|_| {
            let http = self.http.clone();
            let url = format!("{}/graphql", self.base);
            let tokens = tokens.clone();
            async move {
                let body = json!({ "query": PEOPLE_QUERY });
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let token = tokens.choose(&mut rand::rng()).cloned().unwrap_or_default();
                    let started = Instant::now();
                    let response = post_json(&http, &url, Some(&token), &body).await?;
                    if response.get("errors").is_some_and(|e| !e.is_null()) {
                        bail!("query failed: {response}");
                    }
                    latencies.push(started.elapsed());
                }
                anyhow::Ok(latencies)
            }
        });
        let started = Instant::now();
        let mut latencies = Vec::new();
        for worker in join_all(workers).await {
            latencies.extend(worker?);
        }
        let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
        let (p50, p99) = percentiles(&mut latencies);
        Ok((rate, p50, p99))
    }

    /// `login`: tenant logins/s at the configured argon2id cost, and `/health` p99 meanwhile.
    pub async fn login(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.options.load;
        let domains = Arc::new(
            self.with_admin
                .iter()
                .map(|(d, _)| d.clone())
                .collect::<Vec<_>>(),
        );
        let logins = (0..4).map(|_| {
            let http = self.http.clone();
            let url = format!("{}/graphql", self.base);
            let domains = domains.clone();
            async move {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    let domain = domains.choose(&mut rand::rng()).cloned().unwrap_or_default();
                    let body = json!({
                        "query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
                        "variables": { "i": { "email": format!("admin@{domain}"), "password": ADMIN_PASSWORD, "tenant": domain } }
                    });
                    let response: Value = http.post(&url).json(&body).send().await?.json().await?;
                    if response["data"]["login"]["token"].is_string() {
                        count += 1;
                    }
                }
                anyhow::Ok(count)
            }
        });
        let health = {
            let http = self.http.clone();
            let url = format!("{}/health", self.base);
            async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    http.get(&url).send().await?;
                    latencies.push(started.elapsed());
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                anyhow::Ok(latencies)
            }
        };
        let started = Instant::now();
        let (counts, health) = tokio::join!(join_all(logins), health);
        let mut total = 0;
        for count in counts {
            total += count?;
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        let (_, health_p99) = percentiles(&mut health?);
        self.rows.push(Row::new(
            "login",
            "tenant logins/s (argon2id, 4 clients)",
            rate,
        ));
        self.rows.push(
            Row::new("login", "/health p99 ms during logins", health_p99)
                .target("≤ 20 ms", health_p99 <= 20.0),
        );
        Ok(())
    }

    /// `memory`: RSS and connections with many tenants registered while the query load runs.
    pub async fn memory(&mut self) -> anyhow::Result<()> {
        self.prepare_query_tenants().await?;
        self.state
            .db
            .execute_unprepared(&format!(
                "INSERT INTO public.tenants (id, tenant_name, domain, schema_name, email) \
                 SELECT gen_random_uuid(), 'Registered ' || i, 'registered-' || i || '.bench', \
                        'tenant_registered_' || i, 'office@registered-' || i || '.bench' \
                   FROM generate_series(1, {}) i",
                self.options.registered
            ))
            .await?;
        let before = rss_mb_of(std::process::id())?;
        let load = self.people_load(self.options.load);
        let sampler = async {
            let mut peak_connections = 0.0_f64;
            let deadline = Instant::now() + self.options.load;
            while Instant::now() < deadline {
                let connections = self
                    .sql_one("SELECT count(*)::float8 FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'")
                    .await?;
                peak_connections = peak_connections.max(connections);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok(peak_connections)
        };
        let (load, connections) = tokio::join!(load, sampler);
        load?;
        let connections = connections?;
        let after = rss_mb_of(std::process::id())?;
        let tenants = self.options.registered + self.plain.len() + self.with_admin.len();
        // The server's own RSS, in a process of its own, is `server-memory`'s.
        self.rows.push(Row::new(
            "memory",
            &format!("process RSS MB, {tenants} tenants (server + bench client)"),
            after,
        ));
        self.rows.push(Row::new(
            "memory",
            "RSS growth MB during the load",
            after - before,
        ));
        self.rows.push(
            Row::new("memory", "peak PostgreSQL connections", connections).target(
                &format!("≤ pool size {} (+1 sampler)", self.options.pool_size),
                connections <= f64::from(self.options.pool_size) + 1.0,
            ),
        );
        Ok(())
    }
}

/// The fields `createTenant` needs for a tenant of `domain`.
fn bench_tenant(domain: &str) -> Value {
    json!({ "tenantName": domain, "domain": domain, "email": format!("office@{domain}") })
}

/// POSTs `body` to `url`, with a bearer `token` when given, and returns the JSON answer.
async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut request = http.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?.json().await?)
}

/// p50 and p99 in milliseconds.
pub fn percentiles(latencies: &mut [Duration]) -> (f64, f64) {
    if latencies.is_empty() {
        return (0.0, 0.0);
    }
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
    };
    (at(0.5), at(0.99))
}

/// The result table as text.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "| {:<12} | {:<48} | {:>11} | {:>10} | {:>6} | {:<26} | {:<4} |\n|{}|{}|{}|{}|{}|{}|{}|\n",
        "scenario",
        "metric",
        "tenantgraph",
        "baseline",
        "ratio",
        "target",
        "met",
        "-".repeat(14),
        "-".repeat(50),
        "-".repeat(13),
        "-".repeat(12),
        "-".repeat(8),
        "-".repeat(28),
        "-".repeat(6)
    );
    for row in rows {
        out.push_str(&format!(
            "| {:<12} | {:<48} | {:>11.2} | {:>10} | {:>6} | {:<26} | {:<4} |\n",
            row.scenario,
            row.metric,
            row.tenantgraph,
            row.baseline.map(|b| format!("{b:.2}")).unwrap_or_default(),
            row.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
            row.target,
            match row.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            }
        ));
    }
    out
}

//! `servers`: the same work with the tenants on one database server and spread over two. Two
//! release servers run side by side, each in a process of its own on a fresh control database
//! of this run's cluster; the second gets a data server — a database on a second cluster this
//! scenario starts — so that placement (the active server with the fewest tenants) puts every
//! other tenant there. Provisioning alternates between the two layouts chunk by chunk, and the
//! query load of `query` alternates between them turn by turn, each time in the other order (one,
//! two, two, one, …), so that the machine's drift lands on both; ratio = two servers ÷ one server.

use std::{path::Path, time::Instant};

use anyhow::Context;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use tenantgraph::db::{
    self,
    embedded::{EmbeddedOptions, EmbeddedPostgres},
};

use crate::{
    Bench, CHUNK, OPERATOR_EMAIL, OPERATOR_PASSWORD, Row,
    query::{LoadReport, PEOPLE_PER_TENANT, QUERY_TENANTS, tempdir_for},
    server_memory::{ServerProcess, add_people, cpu_seconds_of},
};

/// Turns of the query load each layout gets (an even number, see `compare_layouts`).
const LOAD_TURNS: usize = 4;
/// Two servers must do at least this share of what one does (same-run noise allowed for).
const NO_DROP: f64 = 0.9;
const DATA_SERVER: &str = "second";

/// One way of placing the tenants, with its own server process.
struct Layout {
    label: &'static str,
    server: ServerProcess,
    operator: String,
    /// The data server's database, for the two-server layout.
    data_url: Option<String>,
    provision_seconds: f64,
    tenants: Vec<(String, String)>,
    loads: Vec<LoadReport>,
    /// The server process's CPU time during its loads.
    load_cpu_seconds: f64,
}

impl Layout {
    fn provision_rate(&self) -> f64 {
        self.tenants.len() as f64 / self.provision_seconds
    }

    fn query_rate(&self) -> f64 {
        let requests: u64 = self.loads.iter().map(|load| load.requests).sum();
        let seconds: f64 = self.loads.iter().map(|load| load.seconds).sum();
        requests as f64 / seconds
    }

    /// The server's CPU time per request of its loads, in microseconds: what placement costs
    /// the server itself, apart from what two clusters on one machine cost each other.
    fn cpu_micros_per_request(&self) -> f64 {
        let requests: u64 = self.loads.iter().map(|load| load.requests).sum();
        self.load_cpu_seconds * 1e6 / requests as f64
    }

    fn worst_p99(&self) -> f64 {
        self.loads
            .iter()
            .map(|load| load.p99_ms)
            .fold(0.0, f64::max)
    }

    fn failed(&self) -> u64 {
        self.loads.iter().map(|load| load.failed).sum()
    }
}

/// The layouts in turn `turn`: one, two, then two, one, …, so that a drift of the machine over
/// the turns lands on both alike.
fn turn_order(turn: usize) -> [usize; 2] {
    if turn.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

impl Bench {
    /// `servers`; see the module documentation.
    pub async fn servers(
        &mut self,
        server_bin: &Path,
        load_bin: &Path,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!(
            "tenantgraph-bench-second-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let cluster = EmbeddedPostgres::start(EmbeddedOptions {
            data_dir: dir.clone(),
            pg_bin: std::env::var_os("PG_BIN").map(Into::into),
        })
        .await
        .context("starting the second cluster")?;
        let measured = self
            .compare_layouts(server_bin, load_bin, &cluster, progress)
            .await;
        cluster.stop().await?;
        std::fs::remove_dir_all(&dir).ok();
        let [one, two] = measured?;
        self.report_layouts(&one, &two).await
    }

    async fn compare_layouts(
        &self,
        server_bin: &Path,
        load_bin: &Path,
        cluster: &EmbeddedPostgres,
        progress: &indicatif::ProgressBar,
    ) -> anyhow::Result<[Layout; 2]> {
        let mut layouts = [
            self.layout("one", server_bin, None).await?,
            self.layout("two", server_bin, Some(cluster)).await?,
        ];
        let count = self.options.tenants.clamp(1, QUERY_TENANTS);
        for (chunk, made) in (0..count).step_by(CHUNK).enumerate() {
            let size = CHUNK.min(count - made);
            for index in turn_order(chunk) {
                let layout = &mut layouts[index];
                let prefix = format!("{}-{made}", layout.label);
                let started = Instant::now();
                let (_, _, tenants) = self
                    .provision_tenants_on(
                        &layout.server.base,
                        &layout.operator,
                        &prefix,
                        size,
                        true,
                        progress,
                    )
                    .await?;
                layout.provision_seconds += started.elapsed().as_secs_f64();
                layout.tenants.extend(tenants);
            }
        }
        let mut tokens_files = Vec::new();
        for layout in &layouts {
            tokens_files.push(self.prepare_load(layout).await?);
        }
        for turn in 0..LOAD_TURNS {
            for index in turn_order(turn) {
                let (layout, tokens) = (&mut layouts[index], &tokens_files[index]);
                let url = format!("{}/graphql", layout.server.base);
                let cpu_before = cpu_seconds_of(layout.server.pid)?;
                let load = self.run_load(load_bin, "http", &url, tokens).await;
                layout.load_cpu_seconds += cpu_seconds_of(layout.server.pid)? - cpu_before;
                layout
                    .loads
                    .push(load.map_err(|err| err.context(layout.server.log_tail()))?);
            }
        }
        for tokens in &tokens_files {
            if let Some(dir) = tokens.parent() {
                std::fs::remove_dir_all(dir).ok();
            }
        }
        Ok(layouts)
    }

    /// A server process on a fresh control database; with `data_cluster`, a data server on a
    /// fresh database of that cluster added to it.
    async fn layout(
        &self,
        label: &'static str,
        server_bin: &Path,
        data_cluster: Option<&EmbeddedPostgres>,
    ) -> anyhow::Result<Layout> {
        let server = self.spawn_server(server_bin).await?;
        let operator = self
            .login_on(&server.base, None, OPERATOR_EMAIL, OPERATOR_PASSWORD)
            .await?;
        let mut data_url = None;
        if let Some(cluster) = data_cluster {
            let name = format!("bench_data_{}", uuid::Uuid::new_v4().simple());
            db::create_database_if_missing(&cluster.url("postgres"), &name).await?;
            let url = cluster.url(&name);
            self.graphql_on(
                &server.base,
                "mutation($input: AddDatabaseServerInput!) { addDatabaseServer(input: $input) { name } }",
                json!({ "input": { "name": DATA_SERVER, "url": url } }),
                Some(&operator),
            )
            .await?;
            data_url = Some(url);
        }
        Ok(Layout {
            label,
            server,
            operator,
            data_url,
            provision_seconds: 0.0,
            tenants: Vec::new(),
            loads: Vec::new(),
            load_cpu_seconds: 0.0,
        })
    }

    /// People in every tenant of `layout`, on the server it is placed on; the file of its
    /// admins' tokens for the load generator.
    async fn prepare_load(&self, layout: &Layout) -> anyhow::Result<std::path::PathBuf> {
        let placements = self.placements(layout).await?;
        for (server, url) in [
            ("control", Some(&layout.server.database_url)),
            (DATA_SERVER, layout.data_url.as_ref()),
        ] {
            let schemas: Vec<&str> = placements
                .iter()
                .filter(|(_, on)| on == server)
                .map(|(schema, _)| schema.as_str())
                .collect();
            if let Some(url) = url.filter(|_| !schemas.is_empty()) {
                add_people(url, &schemas, PEOPLE_PER_TENANT).await?;
            }
        }
        let tokens = self
            .admin_tokens(&layout.server.base, &layout.tenants)
            .await?;
        let dir = tempdir_for(&layout.server.database_url);
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("tokens");
        std::fs::write(&file, tokens.join("\n"))?;
        Ok(file)
    }

    /// (schema, server) of every tenant of `layout`, from its registry.
    async fn placements(&self, layout: &Layout) -> anyhow::Result<Vec<(String, String)>> {
        let pool = db::open_pool(&layout.server.database_url, 1).await?;
        let rows = pool
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT schema_name, coalesce(server_name, 'control') AS server FROM public.tenants",
            ))
            .await?;
        pool.close().await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String>("", "schema_name")?,
                    row.try_get::<String>("", "server")?,
                ))
            })
            .collect()
    }

    async fn report_layouts(&mut self, one: &Layout, two: &Layout) -> anyhow::Result<()> {
        let on_data_server = self
            .placements(two)
            .await
            .map(|placements| {
                placements
                    .iter()
                    .filter(|(_, server)| server == DATA_SERVER)
                    .count()
            })
            .unwrap_or_default();
        let target = format!("≥ {NO_DROP} × one server");
        let provision_two = two.provision_rate();
        let provision_one = one.provision_rate();
        let query_two = two.query_rate();
        let query_one = one.query_rate();
        let n = two.tenants.len();
        self.rows.extend([
            Row::new(
                "servers",
                &format!("tenants placed on the second server (of {n})"),
                on_data_server as f64,
            ),
            Row::new("servers", "provision tenants/s, two servers", provision_two)
                .against(provision_one)
                .target(&target, provision_two >= NO_DROP * provision_one),
            Row::new("servers", "query req/s, two servers", query_two)
                .against(query_one)
                .target(&target, query_two >= NO_DROP * query_one),
            Row::new(
                "servers",
                "server CPU µs per request, two servers",
                two.cpu_micros_per_request(),
            )
            .against(one.cpu_micros_per_request()),
            Row::new(
                "servers",
                "query p99 ms (worst turn), two servers",
                two.worst_p99(),
            )
            .against(one.worst_p99()),
            Row::new(
                "servers",
                "failed requests, both layouts",
                (one.failed() + two.failed()) as f64,
            )
            .target("0", one.failed() + two.failed() == 0),
        ]);
        Ok(())
    }
}

// The scenarios' futures nest the server's own (async-graphql resolvers included) deeply enough
// to pass the default limit when the release build computes their layouts.
#![recursion_limit = "256"]

use std::time::Duration;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tenantgraph_bench::{Bench, Options, RssSample, curve_table, sibling_bin, table};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Provision,
    MigrateNoop,
    Migrate,
    /// The release server in its own process under load from `tenantgraph-load`, against a raw
    /// SELECT from the same generator.
    Query,
    /// `cloneTenant` (structure, and with 1,000 people) against `createTenant`.
    Clone,
    Login,
    Memory,
    /// The release server in its own process: its RSS over provisioning and a mixed load.
    ServerMemory,
    /// Provisioning and the query load with the tenants on one database server and on two.
    Servers,
}

/// tenantgraph benchmarks; each scenario measures its baseline in the same run.
#[derive(Parser)]
struct Cli {
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Tenants provisioned without an admin (half as many more with one).
    #[arg(long, default_value_t = 200)]
    n: usize,
    /// Tenants provisioned with an admin by `provision` (default: half of `--n`).
    #[arg(long)]
    admins: Option<usize>,
    /// Seconds of each timed load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Tenants of each kind `clone` makes (by migrations, cloned, cloned with data).
    #[arg(long, default_value_t = 20)]
    clones: usize,
    /// Tenants registered without schemas for `memory`.
    #[arg(long, default_value_t = 10_000)]
    registered: usize,
    /// Seconds of the mixed load of `server-memory`.
    #[arg(long, default_value_t = 60)]
    memory_seconds: u64,
    /// The server binary `query` and `server-memory` start (default: `tenantgraph` beside this
    /// program).
    #[arg(long)]
    server_bin: Option<std::path::PathBuf>,
    /// The load generator `query` runs (default: `tenantgraph-load` beside this program).
    #[arg(long)]
    load_bin: Option<std::path::PathBuf>,
    /// Skip `provision`'s baseline (the same schemas replayed as raw DDL): for runs too large
    /// to hold every schema twice (`--n 10000` needs some 40 GB of disk with it).
    #[arg(long)]
    no_baseline: bool,
    /// The servers' pool of connections to PostgreSQL (`DATABASE_MAX_CONNECTIONS`).
    #[arg(long, default_value_t = tenantgraph_bench::POOL_SIZE)]
    pool_size: u32,
    /// Write the results as JSON here (`rows`, and `server_rss`: the curve of `server-memory`).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = Options {
        tenants: cli.n,
        admins: cli.admins.unwrap_or((cli.n / 2).max(1)),
        load: Duration::from_secs(cli.seconds),
        registered: cli.registered,
        memory_load: Duration::from_secs(cli.memory_seconds),
        baseline: !cli.no_baseline,
        clones: cli.clones,
        pool_size: cli.pool_size,
        ..Options::default()
    };
    let mut bench = Bench::start(options).await?;
    // The cluster this run started is stopped whether or not the scenarios succeeded.
    let scenarios = run(&mut bench, &cli).await;
    let rows = bench.finish().await?;
    let curve = scenarios?;
    print!("{}", table(&rows));
    if !curve.is_empty() {
        let every = (curve.len() as f64 / 20.0).ceil().max(1.0);
        print!("\n{}", curve_table(&curve, every));
    }
    if let Some(path) = cli.json {
        let results = serde_json::json!({ "rows": rows, "server_rss": curve });
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(())
}

/// The scenarios `cli` asks for; the curve of `server-memory` (empty when it did not run).
async fn run(bench: &mut Bench, cli: &Cli) -> anyhow::Result<Vec<RssSample>> {
    let total = (cli.n + cli.admins.unwrap_or((cli.n / 2).max(1))) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({elapsed})")
            .expect("valid progress template"),
    );
    let wanted = |scenario: Scenario| cli.scenario == Scenario::All || cli.scenario == scenario;
    // Every other scenario of the in-process server needs tenants: provisioning runs first.
    if !matches!(
        cli.scenario,
        Scenario::ServerMemory | Scenario::Query | Scenario::Clone | Scenario::Servers
    ) {
        bar.set_message("provision");
        bench.provision(&bar).await?;
        bar.finish_and_clear();
    }
    if wanted(Scenario::MigrateNoop) {
        eprintln!("migrate-noop …");
        bench.migrate_noop().await?;
    }
    if wanted(Scenario::Migrate) {
        eprintln!("migrate …");
        bench.migrate().await?;
    }
    if wanted(Scenario::Clone) {
        eprintln!("clone …");
        bench.clone_tenants().await?;
    }
    let server_bin = cli
        .server_bin
        .clone()
        .unwrap_or_else(|| sibling_bin("tenantgraph"));
    let load_bin = cli
        .load_bin
        .clone()
        .unwrap_or_else(|| sibling_bin("tenantgraph-load"));
    if wanted(Scenario::Query) {
        eprintln!("query …");
        let bar = ProgressBar::new(cli.n.min(100) as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} query tenants ({elapsed})")
                .expect("valid progress template"),
        );
        bench.query(&server_bin, &load_bin, &bar).await?;
        bar.finish_and_clear();
    }
    if wanted(Scenario::Servers) {
        eprintln!("servers …");
        let bar = ProgressBar::new(2 * cli.n.min(100) as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} servers provision ({elapsed})")
                .expect("valid progress template"),
        );
        bench.servers(&server_bin, &load_bin, &bar).await?;
        bar.finish_and_clear();
    }
    if wanted(Scenario::Login) {
        eprintln!("login …");
        bench.login().await?;
    }
    if wanted(Scenario::Memory) {
        eprintln!("memory …");
        bench.memory().await?;
    }
    let mut curve = Vec::new();
    if wanted(Scenario::ServerMemory) {
        eprintln!("server-memory …");
        let bar = ProgressBar::new(cli.n as u64).with_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} server-memory provision ({elapsed})",
            )
            .expect("valid progress template"),
        );
        curve = bench.server_memory(&server_bin, &bar).await?;
        bar.finish_and_clear();
    }
    Ok(curve)
}

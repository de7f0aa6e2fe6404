use std::time::Duration;

use clap::{Parser, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tenantgraph_bench::{Bench, Options, table};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    All,
    Provision,
    MigrateNoop,
    Migrate,
    Query,
    Login,
    Memory,
}

/// tenantgraph benchmarks; each scenario measures its baseline in the same run.
#[derive(Parser)]
struct Cli {
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Tenants provisioned without an admin (half as many more with one).
    #[arg(long, default_value_t = 200)]
    n: usize,
    /// Seconds of each timed load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Tenants registered without schemas for `memory`.
    #[arg(long, default_value_t = 10_000)]
    registered: usize,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let options = Options {
        tenants: cli.n,
        load: Duration::from_secs(cli.seconds),
        registered: cli.registered,
        ..Options::default()
    };
    let total = (cli.n + (cli.n / 2).max(1)) as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({elapsed})")
            .expect("valid progress template"),
    );
    let mut bench = Bench::start(options).await?;
    let wanted = |scenario: Scenario| cli.scenario == Scenario::All || cli.scenario == scenario;
    // Every scenario needs tenants: provisioning always runs first.
    bar.set_message("provision");
    bench.provision(&bar).await?;
    bar.finish_and_clear();
    if wanted(Scenario::MigrateNoop) {
        eprintln!("migrate-noop …");
        bench.migrate_noop().await?;
    }
    if wanted(Scenario::Migrate) {
        eprintln!("migrate …");
        bench.migrate().await?;
    }
    if wanted(Scenario::Query) {
        eprintln!("query …");
        bench.query().await?;
    }
    if wanted(Scenario::Login) {
        eprintln!("login …");
        bench.login().await?;
    }
    if wanted(Scenario::Memory) {
        eprintln!("memory …");
        bench.memory().await?;
    }
    let rows = bench.finish().await?;
    print!("{}", table(&rows));
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}

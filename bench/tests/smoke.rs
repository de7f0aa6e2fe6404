//! The suite runs end to end on a tiny scale (no timing is asserted).

use std::time::Duration;

use tenantgraph_bench::{Bench, Options};

/// The server binary of this build (`target/<profile>/tenantgraph`, beside this test's `deps/`),
/// built first when it is missing.
fn server_bin() -> std::path::PathBuf {
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_owned();
    let bin = profile_dir.join("tenantgraph");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "-p", "tenantgraph", "--bin", "tenantgraph"])
            .status()
            .unwrap();
        assert!(built.success(), "building the server binary");
    }
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_reports_finite_numbers() {
    let options = Options {
        tenants: 3,
        admins: 1,
        load: Duration::from_millis(500),
        clients: 2,
        registered: 20,
        memory_load: Duration::from_secs(2),
        baseline: true,
        clones: 2,
        pool_size: tenantgraph_bench::POOL_SIZE,
    };
    let mut bench = Bench::start(options).await.unwrap();
    bench
        .provision(&indicatif::ProgressBar::hidden())
        .await
        .unwrap();
    bench.migrate_noop().await.unwrap();
    bench.migrate().await.unwrap();
    bench.clone_tenants().await.unwrap();
    let load_bin = std::path::Path::new(env!("CARGO_BIN_EXE_tenantgraph-load"));
    bench
        .query(&server_bin(), load_bin, &indicatif::ProgressBar::hidden())
        .await
        .unwrap();
    bench
        .servers(&server_bin(), load_bin, &indicatif::ProgressBar::hidden())
        .await
        .unwrap();
    bench.login().await.unwrap();
    bench.memory().await.unwrap();
    let curve = bench
        .server_memory(&server_bin(), &indicatif::ProgressBar::hidden())
        .await
        .unwrap();
    let rows = bench.finish().await.unwrap();
    assert!(!curve.is_empty(), "the server's RSS was sampled");
    for sample in &curve {
        assert!(sample.rss_mb > 0.0 && sample.seconds >= 0.0, "{sample:?}");
    }
    assert!(
        curve
            .windows(2)
            .all(|pair| pair[0].seconds <= pair[1].seconds)
    );
    assert!(
        tenantgraph_bench::curve_table(&curve, 1.0).lines().count() >= 3,
        "a header and at least one sample"
    );
    for scenario in [
        "provision",
        "migrate-noop",
        "migrate",
        "clone",
        "query",
        "login",
        "memory",
        "server-memory",
        "servers",
    ] {
        assert!(
            rows.iter().any(|row| row.scenario == scenario),
            "{scenario} reported"
        );
    }
    let placed = rows
        .iter()
        .find(|row| {
            row.metric
                .starts_with("tenants placed on the second server")
        })
        .expect("the two-server layout reports its placement");
    assert!(
        placed.tenantgraph >= 1.0,
        "placement used the second server: {placed:?}"
    );
    for row in &rows {
        assert!(
            row.tenantgraph.is_finite() && row.tenantgraph >= 0.0,
            "{row:?}"
        );
        if let Some(ratio) = row.ratio {
            assert!(ratio.is_finite() && ratio > 0.0, "{row:?}");
        }
    }
    let rendered = tenantgraph_bench::table(&rows);
    assert_eq!(rendered.lines().count(), rows.len() + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_without_its_baseline_reports_rates_without_ratios() {
    let options = Options {
        tenants: 2,
        admins: 1,
        baseline: false,
        ..Options::default()
    };
    let mut bench = Bench::start(options).await.unwrap();
    bench
        .provision(&indicatif::ProgressBar::hidden())
        .await
        .unwrap();
    let rows = bench.finish().await.unwrap();
    let rates: Vec<_> = rows
        .iter()
        .filter(|row| row.metric.starts_with("tenants/s"))
        .collect();
    assert_eq!(rates.len(), 2, "{rows:?}");
    for row in rates {
        assert!(
            row.tenantgraph > 0.0 && row.baseline.is_none() && row.ratio.is_none(),
            "{row:?}"
        );
    }
}

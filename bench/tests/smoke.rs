//! The suite runs end to end on a tiny scale (no timing is asserted).

use std::time::Duration;

use tenantgraph_bench::{Bench, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_reports_finite_numbers() {
    let options = Options {
        tenants: 3,
        load: Duration::from_millis(500),
        clients: 2,
        registered: 20,
    };
    let mut bench = Bench::start(options).await.unwrap();
    bench
        .provision(&indicatif::ProgressBar::hidden())
        .await
        .unwrap();
    bench.migrate_noop().await.unwrap();
    bench.migrate().await.unwrap();
    bench.query().await.unwrap();
    bench.login().await.unwrap();
    bench.memory().await.unwrap();
    let rows = bench.finish().await.unwrap();
    for scenario in [
        "provision",
        "migrate-noop",
        "migrate",
        "query",
        "login",
        "memory",
    ] {
        assert!(
            rows.iter().any(|row| row.scenario == scenario),
            "{scenario} reported"
        );
    }
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

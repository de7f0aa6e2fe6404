//! The app and its database going away: readiness follows the database, and start-up refuses a
//! database it cannot reach.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use tenantgraph::{
    db::{
        create_database_if_missing,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
    },
    startup::Application,
};

use crate::helpers::{TestApp, config_from, test_env};

/// A private data directory under the system temp dir. Dropping it stops any server still
/// running there (a failed test must not leave a postmaster behind) and removes the directory.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        // Under /tmp, which the unprivileged server user can always reach.
        let dir = std::env::temp_dir().join(format!(
            "tenantgraph-db-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }

    fn options(&self) -> EmbeddedOptions {
        EmbeddedOptions {
            data_dir: self.0.clone(),
            pg_bin: std::env::var_os("PG_BIN").map(Into::into),
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let pid_file = self.0.join("postgres").join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            // SIGINT is PostgreSQL's fast shutdown.
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).is_ok() {
                let deadline = Instant::now() + Duration::from_secs(20);
                while pid_file.exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `/health/db` until it answers `status` or `within` has passed; returns the last status.
async fn wait_for_readiness(app: &TestApp, status: u16, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    loop {
        let last = app
            .http
            .get(app.url("/health/db"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if last == status || Instant::now() >= deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readiness_turns_503_while_the_database_is_stopped_and_recovers_when_it_returns() {
    let scratch = ScratchDir::new();
    let cluster = EmbeddedPostgres::start(scratch.options())
        .await
        .expect("a private cluster starts");
    create_database_if_missing(&cluster.url("postgres"), "tenantgraph")
        .await
        .unwrap();
    let app = TestApp::spawn_on(&cluster.url("tenantgraph"), |_| {}).await;
    assert_eq!(app.database.name, "tenantgraph");
    assert_eq!(wait_for_readiness(&app, 200, Duration::ZERO).await, 200);

    cluster.stop().await.expect("the cluster stops");
    assert_eq!(
        wait_for_readiness(&app, 503, Duration::from_secs(30)).await,
        503,
        "readiness still says ok with the database stopped"
    );
    // Liveness is not readiness: the process still serves.
    let live = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(live.status(), 200);

    let cluster = EmbeddedPostgres::start(scratch.options())
        .await
        .expect("the cluster starts again on the same data dir");
    assert_eq!(
        wait_for_readiness(&app, 200, Duration::from_secs(60)).await,
        200,
        "readiness did not recover"
    );
    // Queries work again too, over the same pool.
    assert!(!app.operator_token().await.is_empty());

    drop(app);
    cluster.stop().await.expect("the cluster stops at the end");
}

#[tokio::test]
async fn the_app_refuses_to_start_when_the_database_cannot_be_reached() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://tenantgraph:secret@127.0.0.1:{port}/tenantgraph");
    // A generous deadline: the point is that start-up gives up instead of hanging.
    let Err(err) = tokio::time::timeout(
        Duration::from_secs(120),
        Application::build(config_from(&test_env(&url))),
    )
    .await
    .expect("start-up gives up on an unreachable database") else {
        panic!("the app started without a database");
    };
    let message = format!("{err:#}");
    assert!(message.contains("PostgreSQL"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password leaks into the error: {message}"
    );
}

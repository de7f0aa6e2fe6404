//! The GraphQL Foundation's conformance tools against the real server: `graphql-http`'s
//! `auditServer` (GraphQL over HTTP) and the reference clients of both WebSocket protocols.
//! They need node and `npm ci` in `tests/conformance` (see its README), so they are ignored by
//! default and fail when run without them; CI runs them with
//! `cargo test --test api conformance -- --ignored`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use crate::helpers::{OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp};

/// The longest a node script may take (the WebSocket scenarios wait out a 10 s deadline).
const NODE_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
#[ignore = "needs node: see tests/conformance/README.md"]
async fn the_graphql_http_audit_passes_with_no_error_and_no_warning() {
    let app = TestApp::spawn().await;
    run_node("audit-http.mjs", &app).await;
}

#[tokio::test]
#[ignore = "needs node: see tests/conformance/README.md"]
async fn the_reference_websocket_clients_pass_every_scenario() {
    let app = TestApp::spawn().await;
    run_node("ws-clients.mjs", &app).await;
}

/// Runs `tests/conformance/<script> <graphql url>` with node and fails unless it exits 0. Its
/// output is printed (shown with `--nocapture`, or with the failure).
async fn run_node(script: &str, app: &TestApp) {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    assert!(
        folder.join("node_modules").is_dir(),
        "no node_modules in {}: run `npm ci` there first (see its README.md)",
        folder.display()
    );
    let node = std::env::var_os("NODE").unwrap_or_else(|| "node".into());
    let child = tokio::process::Command::new(&node)
        .arg(script)
        .arg(app.url("/graphql"))
        .env("OPERATOR_EMAIL", OPERATOR_EMAIL)
        .env("OPERATOR_PASSWORD", OPERATOR_PASSWORD)
        .current_dir(&folder)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| {
            panic!("cannot run {node:?} ({err}): these checks need node, see tests/conformance/README.md")
        });
    let output = tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {NODE_TIMEOUT:?}"))
        .expect("node's output is read");
    println!("\n{}", String::from_utf8_lossy(&output.stdout));
    if !output.stderr.is_empty() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(
        output.status.success(),
        "{script} failed ({}); its output is above",
        output.status
    );
}

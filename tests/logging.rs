//! What the JSON log says about a tenant's work, read from the log itself.
//!
//! A binary of its own: the test installs a log subscriber for its thread, and tracing's
//! per-callsite interest is shared by the whole process, so tests running beside it in the same
//! process could change what it sees.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use serde_json::json;

use crate::helpers::TestApp;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
            .collect()
    }
}

#[tokio::test]
async fn json_log_lines_name_the_tenant_they_are_about_and_never_its_secrets() {
    use tracing_subscriber::{filter::Targets, prelude::*};

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            Targets::new()
                .with_target("tenantgraph", tracing::Level::INFO)
                .with_target("tower_http", tracing::Level::DEBUG),
        )
        .with(tenantgraph::telemetry::json_layer(move || writer.clone()));
    // The test's runtime runs the app's tasks on this thread.
    let _logging = tracing::subscriber::set_default(subscriber);

    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("logged.church").await;
    app.graphql_with_key("{ me { kind } }", json!({}), &tenant.api_key)
        .await
        .data();
    app.graphql(
        "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
        json!({ "id": tenant.id }),
        Some(&tenant.operator),
    )
    .await
    .data();

    let lines = captured.lines();
    let about_the_tenant = |line: &serde_json::Value| {
        line["spans"].as_array().is_some_and(|spans| {
            spans
                .iter()
                .any(|span| span["tenant_id"] == tenant.id && span["schema"] == tenant.schema)
        })
    };
    let deactivated = lines
        .iter()
        .find(|line| line["action"] == "tenant.deactivate")
        .expect("a line for the deactivation");
    assert!(about_the_tenant(deactivated), "{deactivated}");
    assert_eq!(deactivated["span"]["name"], "set tenant active");
    let provisioned = lines
        .iter()
        .find(|line| line["action"] == "tenant.create")
        .expect("a line for the provisioning");
    assert!(about_the_tenant(provisioned), "{provisioned}");
    // The request made with the tenant's API key: its request span names the tenant.
    assert!(
        lines
            .iter()
            .any(|line| line["span"]["name"] == "http request"
                && line["span"]["tenant_id"] == tenant.id
                && line["span"]["schema"] == tenant.schema),
        "no request line names the tenant"
    );

    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for secret in [
        tenant.api_key.as_str(),
        helpers::TENANT_PASSWORD,
        tenant.admin.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}

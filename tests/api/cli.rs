//! The `tenantgraph` binary against a test database.

use std::process::Output;

use crate::helpers::{TestApp, tenant_input};

pub(crate) fn tenantgraph(app: &TestApp, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tenantgraph"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database.url)
        .env("JWT_SECRET", crate::helpers::JWT_SECRET)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the binary runs")
}

pub(crate) fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_cli_migrates_one_tenant_down_and_the_fleet_back_up() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    for domain in ["cli-one", "cli-two"] {
        app.create_tenant(&token, tenant_input(domain)).await;
    }
    let names = migration::tenant_migration_names();

    let down = stdout(&tenantgraph(
        &app,
        &[
            "migrate",
            "tenant",
            "--schema",
            "tenant_cli_one",
            "down",
            "--steps",
            "2",
        ],
    ));
    assert!(down.contains(&names[names.len() - 3]), "{down}");
    let status = stdout(&tenantgraph(
        &app,
        &["migrate", "tenant", "--schema", "tenant_cli_one", "status"],
    ));
    assert_eq!(status.matches("pending").count(), 2, "{status}");
    let history = stdout(&tenantgraph(
        &app,
        &["migrate", "tenant", "--schema", "tenant_cli_one", "history"],
    ));
    assert_eq!(history.lines().count(), names.len() - 2, "{history}");

    let fleet = stdout(&tenantgraph(&app, &["migrate", "tenants", "up"]));
    assert!(fleet.contains("1 succeeded, 0 failed, of 1"), "{fleet}");
    let again = stdout(&tenantgraph(&app, &["migrate", "tenants", "up"]));
    assert!(
        again.contains("every tenant is at the target revision"),
        "{again}"
    );

    let list = stdout(&tenantgraph(&app, &["tenants", "list"]));
    assert!(
        list.contains("cli-one") && list.contains("cli-two"),
        "{list}"
    );
    assert_eq!(
        list.matches(names.last().unwrap().as_str()).count(),
        2,
        "{list}"
    );
}

#[tokio::test]
async fn the_cli_refuses_schemas_that_belong_to_no_tenant_and_reports_them() {
    let app = TestApp::spawn().await;
    let agreeing = stdout(&tenantgraph(&app, &["tenants", "reconcile"]));
    assert!(agreeing.contains("agree"), "{agreeing}");
    sea_orm::ConnectionTrait::execute_unprepared(app.db(), "CREATE SCHEMA tenant_stray")
        .await
        .unwrap();
    let refused = tenantgraph(
        &app,
        &["migrate", "tenant", "--schema", "tenant_stray", "up"],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("belongs to no tenant"));
    let reconcile = tenantgraph(&app, &["tenants", "reconcile"]);
    assert!(!reconcile.status.success(), "a disagreement exits non-zero");
    let report = String::from_utf8_lossy(&reconcile.stdout);
    assert!(
        report.contains("orphan schema (no tenant): tenant_stray"),
        "{report}"
    );
    let bad_revision = tenantgraph(&app, &["migrate", "tenants", "up", "--to", "nope"]);
    assert!(!bad_revision.status.success());
}

#[tokio::test]
async fn admin_create_and_public_status_work_from_the_cli() {
    let app = TestApp::spawn().await;
    let created = stdout(&tenantgraph(
        &app,
        &[
            "admin",
            "create",
            "--email",
            "Second@Ops.test",
            "--password",
            "second-operator-pw",
        ],
    ));
    assert!(created.contains("second@ops.test"), "{created}");
    let login = app.login("second@ops.test", "second-operator-pw").await;
    assert!(login.data()["login"]["token"].is_string());
    let duplicate = tenantgraph(
        &app,
        &[
            "admin",
            "create",
            "--email",
            "second@ops.test",
            "--password",
            "second-operator-pw",
        ],
    );
    assert!(!duplicate.status.success());

    let status = stdout(&tenantgraph(&app, &["migrate", "public", "status"]));
    assert!(
        status.lines().all(|line| line.starts_with("applied ")),
        "{status}"
    );
    assert_eq!(
        status.lines().count(),
        <migration::PublicMigrator as migration::sea_orm_migration::MigratorTrait>::migrations()
            .len()
    );
}

#[test]
fn a_bad_configuration_value_stops_the_binary_with_one_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tenantgraph"))
        .args(["migrate", "public", "status"])
        .env_clear()
        .env("BIND_ADDR", "nowhere")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("BIND_ADDR"), "{stderr}");
}

#[test]
fn schema_export_prints_the_committed_sdl() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tenantgraph"))
        .args(["schema", "export"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql")).unwrap()
    );
}

#[tokio::test]
async fn the_cli_provisions_a_batch_file_and_fails_when_a_tenant_fails() {
    let app = TestApp::spawn().await;
    let dir = std::env::temp_dir().join(format!("tg-batch-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(
        &good,
        serde_json::json!([
            { "tenant_name": "First Church", "domain": "first.church", "description": "seed format",
              "settings": { "features": ["basic"], "limits": { "users": 10, "storageGb": 2 } } },
            { "tenant_name": "Second Club", "domain": "second-club", "schema_name": "club_second" }
        ])
        .to_string(),
    )
    .unwrap();
    let output = stdout(&tenantgraph(
        &app,
        &[
            "tenants",
            "provision",
            "--file",
            good.to_str().unwrap(),
            "--contact-email",
            "ops@example.org",
        ],
    ));
    assert!(output.contains("2 succeeded, 0 failed, of 2"), "{output}");
    assert!(
        output.contains("tk_"),
        "the new API keys are shown: {output}"
    );
    assert!(output.contains("club_second"), "{output}");

    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        serde_json::json!({ "tenants": [
            { "tenant_name": "Third", "domain": "third.church", "email": "a@third.church" },
            { "tenant_name": "Bad", "domain": "bad domain", "email": "a@b.co" }
        ] })
        .to_string(),
    )
    .unwrap();
    let failed = tenantgraph(
        &app,
        &["tenants", "provision", "--file", bad.to_str().unwrap()],
    );
    assert!(!failed.status.success());
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(text.contains("1 succeeded, 1 failed, of 2"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

//! `tenants backup` and `tenants restore` with the real binary, pg_dump and pg_restore.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use serde_json::{Value, json};

use crate::{
    cli::{stdout, tenantgraph},
    helpers::{TENANT_PASSWORD, TestApp},
};

const PEOPLE: &str = "{ people(first: 100) { totalCount nodes { id firstName lastName email notes externalRef createdAt } } }";
const HEALTH: &str = "query($id: ID!) { tenantHealth(tenantId: $id) { status drifted } }";
const DRIFT: &str =
    "query($id: ID!) { tenantDrift(tenantId: $id) { drifted differences { name detail } } }";

fn backup(app: &TestApp, tenant: &str, out: &Path) -> Output {
    tenantgraph(
        app,
        &["tenants", "backup", "--tenant", tenant, "--out", path(out)],
    )
}

fn restore(app: &TestApp, file: &Path, as_domain: Option<&str>) -> Output {
    let mut args = vec!["tenants", "restore", "--file", path(file)];
    args.extend(
        as_domain
            .map(|domain| ["--as", domain])
            .into_iter()
            .flatten(),
    );
    tenantgraph(app, &args)
}

/// A scratch folder for backup files, removed with the test's database.
fn folder(app: &TestApp) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tenantgraph-backup-{}", app.database.name));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(file: &Path) -> &str {
    file.to_str().unwrap()
}

/// The API key a restore printed.
pub(crate) fn printed_key(out: &str) -> String {
    out.lines()
        .find_map(|line| line.trim().strip_prefix("API key (shown only now): "))
        .unwrap_or_else(|| panic!("no key in {out}"))
        .to_owned()
}

async fn people_with_key(app: &TestApp, key: &str) -> Value {
    let response = app.graphql_with_key(PEOPLE, json!({}), key).await;
    response.data()["people"].clone()
}

async fn tenant_id(app: &TestApp, token: &str, domain: &str) -> Option<String> {
    let found = app
        .graphql(
            "query($d: String) { tenant(domain: $d) { id } }",
            json!({ "d": domain }),
            Some(token),
        )
        .await;
    found.data()["tenant"]["id"].as_str().map(str::to_owned)
}

async fn healthy(app: &TestApp, token: &str, id: &str) {
    let health = app.graphql(HEALTH, json!({ "id": id }), Some(token)).await;
    assert_eq!(
        health.data()["tenantHealth"]["status"],
        "HEALTHY",
        "{:?}",
        health.0
    );
    let drift = app.graphql(DRIFT, json!({ "id": id }), Some(token)).await;
    assert_eq!(
        drift.data()["tenantDrift"]["drifted"],
        false,
        "{:?}",
        drift.0
    );
}

#[tokio::test]
async fn a_backup_restores_as_a_new_tenant_and_as_itself_with_its_data_and_a_new_key() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("backed.org").await;
    let token = tenant.operator.clone();
    for (first, notes) in [
        ("Ruth", "O'Hara; tenant_backed_org.person \\ tab\there"),
        ("Boaz", ""),
    ] {
        let made = app
            .graphql_with_key(
                "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id } }",
                json!({ "input": { "firstName": first, "lastName": "Moab", "email": format!("{first}@x.org"), "notes": notes } }),
                &tenant.api_key,
            )
            .await;
        assert!(
            made.data()["createPerson"]["id"].is_string(),
            "{:?}",
            made.0
        );
    }
    let original = people_with_key(&app, &tenant.api_key).await;
    assert_eq!(original["totalCount"], 2);

    let dir = folder(&app);
    let file = dir.join("backed.tgb");
    let out = stdout(&backup(&app, "backed.org", &file));
    assert!(out.contains("backed up tenant backed.org"), "{out}");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"TENANTGRAPH-BACKUP 1\n"));

    // As a new tenant, next to the live original.
    let copy = stdout(&restore(&app, &file, Some("copy.org")));
    assert!(copy.contains("schema tenant_copy_org"), "{copy}");
    assert!(copy.contains("health: HEALTHY"), "{copy}");
    let copy_key = printed_key(&copy);
    assert_ne!(copy_key, tenant.api_key);
    assert_eq!(people_with_key(&app, &copy_key).await, original);
    let copy_id = tenant_id(&app, &token, "copy.org").await.unwrap();
    assert_ne!(copy_id, tenant.id);
    healthy(&app, &token, &copy_id).await;
    // Nothing of the copy names the original's schema; its users log in, without old sessions.
    let old_names = app
        .scalar(
            "SELECT count(*) FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'tenant_copy_org' AND pg_get_expr(d.adbin, d.adrelid) LIKE '%backed%'",
        )
        .await;
    assert_eq!(old_names, 0);
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.sessions WHERE tenant_id = '{copy_id}'"
        ))
        .await,
        0
    );
    let login = app
        .tenant_login("copy.org", "admin@backed.org", TENANT_PASSWORD)
        .await;
    assert!(login.data()["login"]["token"].is_string(), "{:?}", login.0);
    // The original is untouched and keeps its key.
    assert_eq!(people_with_key(&app, &tenant.api_key).await, original);

    // As itself: refused while it lives.
    let refused = restore(&app, &file, None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("live tenant"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let deleted = app
        .graphql(
            "mutation($id: ID!) { deleteTenant(id: $id, dropSchema: true, confirm: \"tenant_backed_org\") { schemaDropped } }",
            json!({ "id": tenant.id }),
            Some(&token),
        )
        .await;
    assert_eq!(
        deleted.data()["deleteTenant"]["schemaDropped"],
        true,
        "{:?}",
        deleted.0
    );
    let itself = stdout(&restore(&app, &file, None));
    assert!(
        itself.contains(&tenant.id) && itself.contains("schema tenant_backed_org"),
        "{itself}"
    );
    let key = printed_key(&itself);
    assert_eq!(people_with_key(&app, &key).await, original);
    assert_eq!(
        tenant_id(&app, &token, "backed.org").await.as_deref(),
        Some(tenant.id.as_str())
    );
    healthy(&app, &token, &tenant.id).await;
    // The old key and the old sessions do not come back.
    let old_key = app
        .graphql_with_key(PEOPLE, json!({}), &tenant.api_key)
        .await;
    assert_eq!(old_key.error_code(), "UNAUTHENTICATED");
    let old_session = app.graphql(PEOPLE, json!({}), Some(&tenant.admin)).await;
    assert_eq!(old_session.error_code(), "UNAUTHENTICATED");

    let audited = app
        .scalar(
            "SELECT count(*) FROM public.audit_events WHERE outcome = 'SUCCESS' \
             AND action IN ('tenant.backup', 'tenant.restore')",
        )
        .await;
    assert_eq!(audited, 3);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn truncated_or_foreign_files_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("whole.org").await;
    let dir = folder(&app);
    let file = dir.join("whole.tgb");
    stdout(&backup(&app, &tenant.id, &file));
    let bytes = std::fs::read(&file).unwrap();
    let tenants_before = app.scalar("SELECT count(*) FROM public.tenants").await;
    let schemas_before = app.scalar("SELECT count(*) FROM pg_namespace").await;

    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "a backup holds the tenant's data: private to its owner"
    );

    // A file whose checksum holds but whose dump is not one: pg_restore fails, nothing commits.
    let mut lines = bytes.splitn(3, |b| *b == b'\n');
    let (magic, header) = (lines.next().unwrap(), lines.next().unwrap());
    let mut header: Value = serde_json::from_slice(header).unwrap();
    let junk = b"PGDMP not really a dump".repeat(50);
    header["dumpBytes"] = json!(junk.len());
    header["dumpSha256"] = json!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&junk)));
    let forged = dir.join("forged.tgb");
    std::fs::write(
        &forged,
        [magic, b"\n", header.to_string().as_bytes(), b"\n", &junk].concat(),
    )
    .unwrap();

    let truncated = dir.join("truncated.tgb");
    std::fs::write(&truncated, &bytes[..bytes.len() - 200]).unwrap();
    let damaged = dir.join("damaged.tgb");
    let mut flipped = bytes.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0xff;
    std::fs::write(&damaged, flipped).unwrap();
    let foreign = dir.join("foreign.tgb");
    std::fs::write(&foreign, b"PGDMP this is not ours").unwrap();
    let headless = dir.join("headless.tgb");
    std::fs::write(&headless, b"TENANTGRAPH-BACKUP 1\n{\"format\": 1").unwrap();

    for (file, says) in [
        (&truncated, "truncated"),
        (&damaged, "checksum"),
        (&foreign, "not a tenantgraph backup"),
        (&headless, "truncated"),
        (&forged, "nothing was restored"),
        (&dir.join("missing.tgb"), "could not open"),
    ] {
        let failed = restore(&app, file, Some("other.org"));
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success(), "{file:?} was restored");
        assert!(stderr.contains(says), "{file:?}: {stderr}");
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants").await,
        tenants_before
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM pg_namespace").await,
        schemas_before
    );

    // Bad names are refused too, before anything changes.
    let bad = restore(&app, &file, Some("no such!"));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid domain"));
    let unknown = backup(&app, "nobody.org", &file);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no live tenant"));
    // A schema of the new name that exists already (an orphan) is never overwritten.
    sea_orm::ConnectionTrait::execute_unprepared(app.db(), "CREATE SCHEMA tenant_taken_org")
        .await
        .unwrap();
    let taken = restore(&app, &file, Some("taken.org"));
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("exists in the database"),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants").await,
        tenants_before
    );
    // Each refused restore is in the audit trail.
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.audit_events \
             WHERE action = 'tenant.restore' AND outcome = 'FAILURE'"
        )
        .await,
        8
    );
    // The original backup is still there, whole.
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_backup_below_head_restores_at_its_revision_and_migrates_back_to_head() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("older.org").await;
    let token = tenant.operator.clone();
    let names = migration::tenant_migration_names();
    let older = names[names.len() - 2].clone();
    const MIGRATE: &str = "mutation($id: ID!, $target: String!, $confirm: String) { runMigrations(tenantId: $id, targetRevision: $target, confirm: $confirm) { currentRevision } }";
    let down = app
        .graphql(
            MIGRATE,
            json!({ "id": tenant.id, "target": older, "confirm": "tenant_older_org" }),
            Some(&token),
        )
        .await;
    assert_eq!(
        down.data()["runMigrations"]["currentRevision"],
        older.as_str()
    );
    let dir = folder(&app);
    let file = dir.join("older.tgb");
    stdout(&backup(&app, "tenant_older_org", &file));

    let restored = stdout(&restore(&app, &file, Some("newer.org")));
    assert!(
        restored.contains(&format!("revision {older}")),
        "{restored}"
    );
    let id = tenant_id(&app, &token, "newer.org").await.unwrap();
    let drift = app.graphql(DRIFT, json!({ "id": id }), Some(&token)).await;
    assert_eq!(
        drift.data()["tenantDrift"]["drifted"],
        false,
        "{:?}",
        drift.0
    );
    let status = "query($id: ID) { tenant(id: $id) { status currentRevision } }";
    let parked = app.graphql(status, json!({ "id": id }), Some(&token)).await;
    assert_eq!(parked.data()["tenant"]["status"], "INACTIVE");

    let up = app
        .graphql(MIGRATE, json!({ "id": id, "target": "head" }), Some(&token))
        .await;
    assert_eq!(
        up.data()["runMigrations"]["currentRevision"],
        names.last().unwrap().as_str()
    );
    let active = app.graphql(status, json!({ "id": id }), Some(&token)).await;
    assert_eq!(active.data()["tenant"]["status"], "ACTIVE");
    healthy(&app, &token, &id).await;
    let key = printed_key(&restored);
    assert_eq!(people_with_key(&app, &key).await["totalCount"], json!(0));
    std::fs::remove_dir_all(dir).ok();
}

//! The tenant life cycle through GraphQL: create, provision, migrate, validate, deactivate,
//! delete, API keys.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::helpers::{CREATE_TENANT, Gql, TestApp, tenant_input};

const STATUS: &str = r#"
query($id: ID!) {
  migrationStatus(tenantId: $id) {
    tenantId schemaName currentRevision appliedMigrations pendingMigrations schemaProvisioned migrationsApplied
  }
}"#;

const RUN_MIGRATIONS: &str = r#"
mutation($id: ID!, $target: String!, $confirm: String) {
  runMigrations(tenantId: $id, targetRevision: $target, confirm: $confirm) {
    currentRevision appliedMigrations pendingMigrations migrationsApplied
  }
}"#;

const TENANT: &str = r#"query($id: ID) { tenant(id: $id) { id status schemaProvisioned migrationsApplied currentRevision apiKeyPrefix } }"#;

async fn tables_of(app: &TestApp, schema: &str) -> Vec<String> {
    app.db()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename",
            [schema.into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "tablename").unwrap())
        .collect()
}

async fn schema_exists(app: &TestApp, schema: &str) -> bool {
    app.db()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            [schema.into()],
        ))
        .await
        .unwrap()
        .is_some()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn create_tenant_provisions_migrates_and_seeds_a_schema_with_every_table() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut input = tenant_input("stmarys.church");
    input["settings"] =
        json!({ "features": ["basic", "analytics"], "limits": { "users": 50, "storageGb": 5 } });
    input["admin"] = json!({ "email": "Pastor@StMarys.church", "password": "a-long-admin-password", "name": "Pastor" });
    let created = app.create_tenant(&token, input).await;

    let tenant = &created["tenant"];
    assert_eq!(tenant["schemaName"], "tenant_stmarys_church");
    assert_eq!(tenant["status"], "ACTIVE");
    assert_eq!(tenant["schemaProvisioned"], true);
    assert_eq!(tenant["migrationsApplied"], true);
    assert_eq!(
        tenant["settings"]["features"],
        json!(["basic", "analytics"])
    );
    assert_eq!(
        tenant["settings"]["limits"],
        json!({ "users": 50, "storageGb": 5 })
    );
    assert_eq!(created["schemaCreated"], true);
    assert_eq!(created["migrationStatus"]["pendingMigrations"], json!([]));
    assert_eq!(
        strings(&created["migrationStatus"]["appliedMigrations"]),
        migration::tenant_migration_names()
    );

    let mut expected: Vec<String> = migration::TENANT_TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    expected.sort();
    assert_eq!(tables_of(&app, "tenant_stmarys_church").await, expected);

    // Seeded: settings row, statuses, roles, and the admin with the admin role and an argon2id hash.
    let seeded = app
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (SELECT display_name FROM tenant_stmarys_church.tenant_settings), \
                    (SELECT count(*) FROM tenant_stmarys_church.user_statuses), \
                    (SELECT count(*) FROM tenant_stmarys_church.roles), \
                    (SELECT u.password_hash FROM tenant_stmarys_church.users u \
                       JOIN tenant_stmarys_church.user_roles ur ON ur.user_id = u.id \
                       JOIN tenant_stmarys_church.roles r ON r.id = ur.role_id \
                      WHERE u.email = 'pastor@stmarys.church' AND r.name = 'admin')",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seeded.try_get_by_index::<String>(0).unwrap(),
        "Tenant stmarys.church"
    );
    assert_eq!(seeded.try_get_by_index::<i64>(1).unwrap(), 4);
    assert_eq!(seeded.try_get_by_index::<i64>(2).unwrap(), 3);
    assert!(
        seeded
            .try_get_by_index::<String>(3)
            .unwrap()
            .starts_with("$argon2id$")
    );

    // The pending admin hash does not linger in the registry once seeded.
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE pending_admin IS NOT NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn the_api_key_is_shown_once_stored_as_a_hash_and_rotation_replaces_it() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = app.create_tenant(&token, tenant_input("keys-church")).await;
    let key = created["apiKey"].as_str().unwrap().to_owned();
    let id = created["tenant"]["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("tk_") && key.len() >= 3 + 64, "{key}");
    assert!(key.starts_with(created["tenant"]["apiKeyPrefix"].as_str().unwrap()));

    let stored = |app: &TestApp| {
        let db = app.db().clone();
        async move {
            db.query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT api_key_hash FROM public.tenants",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<String>(0)
            .unwrap()
        }
    };
    let hash = stored(&app).await;
    assert_eq!(hash, tenantgraph::primitives::api_keys::hash(&key));
    assert!(!hash.contains(&key[3..]));
    // No column of the registry holds the key itself.
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.tenants t WHERE t::text LIKE '%{}%'",
            &key[3..]
        ))
        .await,
        0
    );

    let rotated = app
        .graphql(
            "mutation($id: ID!) { rotateApiKey(tenantId: $id) }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    let new_key = rotated.data()["rotateApiKey"].as_str().unwrap();
    assert_ne!(new_key, key);
    assert_eq!(
        stored(&app).await,
        tenantgraph::primitives::api_keys::hash(new_key)
    );
}

#[tokio::test]
async fn the_manual_workflow_provisions_then_migrates_step_by_step() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut input = tenant_input("demo-church");
    input["provisionSchema"] = json!(false);
    input["admin"] = json!({ "email": "admin@demo.church", "password": "demo-admin-password" });
    let created = app.create_tenant(&token, input).await;
    let id = created["tenant"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["tenant"]["status"], "PENDING");
    assert_eq!(created["schemaCreated"], false);
    assert!(!schema_exists(&app, "tenant_demo_church").await);

    let provisioned = app
        .graphql(
            "mutation($id: ID!) { provisionSchema(tenantId: $id) { schemaProvisioned appliedMigrations pendingMigrations } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    assert_eq!(
        provisioned.data()["provisionSchema"]["schemaProvisioned"],
        true
    );
    assert_eq!(
        provisioned.data()["provisionSchema"]["appliedMigrations"],
        json!([])
    );
    assert!(schema_exists(&app, "tenant_demo_church").await);

    let names = migration::tenant_migration_names();
    let middle = &names[1];
    let migrated = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": id, "target": middle }),
            Some(&token),
        )
        .await;
    assert_eq!(
        migrated.data()["runMigrations"]["currentRevision"],
        json!(middle)
    );

    let status = app.graphql(STATUS, json!({ "id": id }), Some(&token)).await;
    let status = &status.data()["migrationStatus"];
    assert_eq!(strings(&status["appliedMigrations"]), names[..2].to_vec());
    assert_eq!(strings(&status["pendingMigrations"]), names[2..].to_vec());
    assert_eq!(status["migrationsApplied"], false);
    let tenant = app.graphql(TENANT, json!({ "id": id }), Some(&token)).await;
    assert_eq!(tenant.data()["tenant"]["status"], "PENDING");
    assert_eq!(tenant.data()["tenant"]["currentRevision"], json!(middle));

    let head = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": id, "target": "head" }),
            Some(&token),
        )
        .await;
    assert_eq!(head.data()["runMigrations"]["pendingMigrations"], json!([]));
    let tenant = app.graphql(TENANT, json!({ "id": id }), Some(&token)).await;
    assert_eq!(tenant.data()["tenant"]["status"], "ACTIVE");
    assert_eq!(tenant.data()["tenant"]["migrationsApplied"], true);
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM tenant_demo_church.users WHERE email = 'admin@demo.church'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn migrating_down_to_base_and_back_up_restores_the_schema() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = app.create_tenant(&token, tenant_input("updown")).await;
    let id = created["tenant"]["id"].as_str().unwrap().to_owned();

    let base = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": id, "target": "base", "confirm": "tenant_updown" }),
            Some(&token),
        )
        .await;
    assert_eq!(base.data()["runMigrations"]["appliedMigrations"], json!([]));
    assert!(base.data()["runMigrations"]["currentRevision"].is_null());
    assert_eq!(tables_of(&app, "tenant_updown").await, ["seaql_migrations"]);

    let health = app
        .graphql(
            "query($id: ID!) { tenantHealth(tenantId: $id) { status schemaExists missingTables revisionMatches dbAccessible } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    let health = &health.data()["tenantHealth"];
    assert_eq!(health["status"], "UNHEALTHY");
    assert_eq!(health["revisionMatches"], true);
    assert!(health["missingTables"].as_array().unwrap().len() >= 8);

    let up = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": id, "target": "head" }),
            Some(&token),
        )
        .await;
    assert_eq!(up.data()["runMigrations"]["migrationsApplied"], true);
    assert_eq!(
        tables_of(&app, "tenant_updown").await.len(),
        migration::TENANT_TABLES.len()
    );
    let health = app
        .graphql(
            "query($id: ID!) { tenantHealth(tenantId: $id) { status missingTables } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    assert_eq!(health.data()["tenantHealth"]["status"], "HEALTHY");
}

#[tokio::test]
async fn an_unknown_target_revision_is_bad_input() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = app.create_tenant(&token, tenant_input("revisions")).await;
    let response = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": created["tenant"]["id"], "target": "m_nope" }),
            Some(&token),
        )
        .await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    assert_eq!(response.error_field(), Some("targetRevision"));
}

/// Each invalid input with the field it must be reported on.
fn invalid_inputs() -> Vec<(Value, &'static str)> {
    let with = |field: &str, value: Value| {
        let mut input = tenant_input("valid-domain");
        input[field] = value;
        input
    };
    vec![
        (with("tenantName", json!("   ")), "tenantName"),
        (with("tenantName", json!("x".repeat(201))), "tenantName"),
        (with("domain", json!("")), "domain"),
        (
            with("domain", json!("a\"; DROP SCHEMA public; --")),
            "domain",
        ),
        (with("domain", json!("exаmple.com")), "domain"), // Cyrillic а
        (with("domain", json!("-bad-.com")), "domain"),
        (with("domain", json!("example.c")), "domain"),
        (with("email", json!("not-an-email")), "email"),
        (with("email", json!("")), "email"),
        (
            with("schemaName", json!("a\"; DROP SCHEMA public; --")),
            "schemaName",
        ),
        (with("schemaName", json!("tenаnt_x")), "schemaName"), // Cyrillic а
        (with("schemaName", json!("a".repeat(64))), "schemaName"),
        (with("schemaName", json!("Upper")), "schemaName"),
        (
            with("schemaName", json!("1starts_with_digit")),
            "schemaName",
        ),
        (with("schemaName", json!("public")), "schemaName"),
        (
            with("schemaName", json!("information_schema")),
            "schemaName",
        ),
        (with("schemaName", json!("pg_temp_x")), "schemaName"),
        (
            with("settings", json!({ "features": ["teleport"] })),
            "settings.features",
        ),
        (
            with("settings", json!({ "limits": { "users": 0 } })),
            "settings.limits.users",
        ),
        (
            with("settings", json!({ "limits": { "users": 10001 } })),
            "settings.limits.users",
        ),
        (
            with("settings", json!({ "limits": { "storageGb": 0 } })),
            "settings.limits.storageGb",
        ),
        (
            with("settings", json!({ "limits": { "storageGb": 1001 } })),
            "settings.limits.storageGb",
        ),
        (with("website", json!("javascript:alert(1)")), "website"),
        (with("phone", json!("call me maybe")), "phone"),
        (with("description", json!("d".repeat(2001))), "description"),
        (with("tenantType", json!("church; drop")), "tenantType"),
        (
            with(
                "admin",
                json!({ "email": "bad", "password": "long-enough-password" }),
            ),
            "admin.email",
        ),
        (
            with("admin", json!({ "email": "a@b.co", "password": "short" })),
            "admin.password",
        ),
        (
            with(
                "admin",
                json!({ "email": "a@b.co", "password": "p".repeat(1025) }),
            ),
            "admin.password",
        ),
    ]
}

#[tokio::test]
async fn every_validation_rule_is_enforced_and_leaves_no_row_and_no_schema() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    for (input, field) in invalid_inputs() {
        let response = app
            .graphql(CREATE_TENANT, json!({ "input": input }), Some(&token))
            .await;
        assert_eq!(
            response.error_code(),
            "BAD_USER_INPUT",
            "{input}: {}",
            response.0
        );
        assert_eq!(
            response.error_field(),
            Some(field),
            "{input}: {}",
            response.0
        );
    }
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 0);
    assert_eq!(
        app.scalar("SELECT count(*) FROM pg_namespace WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%'"
        )
        .await,
        0
    );
    // public is untouched by the injection attempts.
    assert!(schema_exists(&app, "public").await);
}

#[tokio::test]
async fn several_faults_are_reported_together() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let response = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": { "tenantName": "", "domain": "ok-domain", "email": "nope" } }),
            Some(&token),
        )
        .await;
    assert_eq!(response.error_fields(), ["email", "tenantName"]);
}

#[tokio::test]
async fn a_duplicate_domain_or_schema_is_a_conflict() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    app.create_tenant(&token, tenant_input("grace.org")).await;

    let same_domain = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": tenant_input("grace.org") }),
            Some(&token),
        )
        .await;
    assert_eq!(same_domain.error_code(), "CONFLICT");
    assert_eq!(same_domain.error_field(), Some("domain"));

    let mut same_schema = tenant_input("other-grace.org");
    same_schema["schemaName"] = json!("tenant_grace_org");
    let same_schema = app
        .graphql(CREATE_TENANT, json!({ "input": same_schema }), Some(&token))
        .await;
    assert_eq!(same_schema.error_code(), "CONFLICT");
    assert_eq!(same_schema.error_field(), Some("schemaName"));
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 1);
}

#[tokio::test]
async fn concurrent_creates_of_one_domain_make_exactly_one_tenant() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let attempts = (0..6).map(|_| {
        app.graphql(
            CREATE_TENANT,
            json!({ "input": tenant_input("race.example") }),
            Some(&token),
        )
    });
    let responses: Vec<Gql> = futures_util::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.0["errors"].is_null()).count();
    let conflicts = responses
        .iter()
        .filter(|r| !r.0["errors"].is_null() && r.error_code() == "CONFLICT")
        .count();
    assert_eq!((created, conflicts), (1, 5), "{responses:?}");
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 1);
    assert!(schema_exists(&app, "tenant_race_example").await);
}

#[tokio::test]
async fn a_schema_that_exists_outside_the_registry_is_never_reused() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    app.db()
        .execute_unprepared(
            "CREATE SCHEMA tenant_orphan_org; CREATE TABLE tenant_orphan_org.precious (x int)",
        )
        .await
        .unwrap();
    let response = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": tenant_input("orphan.org") }),
            Some(&token),
        )
        .await;
    assert_eq!(response.error_code(), "CONFLICT");
    assert_eq!(response.error_field(), Some("schemaName"));
    assert_eq!(tables_of(&app, "tenant_orphan_org").await, ["precious"]);

    let orphans = app
        .graphql("{ orphanSchemas }", json!({}), Some(&token))
        .await;
    assert_eq!(
        orphans.data()["orphanSchemas"],
        json!(["tenant_orphan_org"])
    );
}

/// Makes creating `person` in `schema` fail, as a migration that breaks half-way would.
pub async fn inject_failure_into_person_migration(app: &TestApp, schema: &str) {
    app.db()
        .execute_unprepared(&format!(
            r#"
            CREATE FUNCTION public.fail_person_migration() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                          WHERE object_identity = '{schema}.person' AND command_tag = 'CREATE TABLE') THEN
                RAISE EXCEPTION 'injected failure while creating person';
              END IF;
            END $$;
            CREATE EVENT TRIGGER fail_person_migration ON ddl_command_end
              EXECUTE FUNCTION public.fail_person_migration();
            "#
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_migration_failing_during_provisioning_rolls_everything_back_and_says_so() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    inject_failure_into_person_migration(&app, "tenant_fragile_org").await;

    let response = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": tenant_input("fragile.org") }),
            Some(&token),
        )
        .await;
    assert_eq!(response.error_code(), "INTERNAL");
    assert_eq!(response.0["errors"][0]["extensions"]["step"], "MIGRATE");
    assert!(
        response.error_message().contains("removed"),
        "{}",
        response.0
    );
    assert!(!schema_exists(&app, "tenant_fragile_org").await);
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 0);
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.audit_events WHERE action = 'tenant.create' AND outcome = 'FAILURE'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_creation_cut_off_by_the_request_time_out_is_still_undone_and_audited() {
    let app = TestApp::spawn_with(|env| {
        env.insert("REQUEST_TIMEOUT_SECONDS".into(), "1".into());
    })
    .await;
    let token = app.operator_token().await;
    // Creating `person` takes longer than the request may, then fails.
    app.db()
        .execute_unprepared(
            r#"
            CREATE FUNCTION public.slow_failing_person() RETURNS event_trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                          WHERE object_identity = 'tenant_cutoff_org.person' AND command_tag = 'CREATE TABLE') THEN
                PERFORM pg_sleep(2);
                RAISE EXCEPTION 'injected failure after the request timed out';
              END IF;
            END $$;
            CREATE EVENT TRIGGER slow_failing_person ON ddl_command_end
              EXECUTE FUNCTION public.slow_failing_person();
            "#,
        )
        .await
        .unwrap();

    let response = app
        .post_json(
            json!({ "query": CREATE_TENANT, "variables": { "input": tenant_input("cutoff.org") } }),
            Some(&token),
        )
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::REQUEST_TIMEOUT);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["errors"][0]["extensions"]["code"], "TIMEOUT", "{body}");

    // The creation goes on without its request: undone and audited, not left PROVISIONING for
    // the background clean-up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let failures = app
            .scalar("SELECT count(*) FROM public.audit_events WHERE action = 'tenant.create' AND outcome = 'FAILURE'")
            .await;
        if failures == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the creation was never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 0);
    assert!(!schema_exists(&app, "tenant_cutoff_org").await);
}

#[tokio::test]
async fn a_failing_migration_leaves_the_schema_at_the_last_good_revision() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut input = tenant_input("halfway.org");
    input["runMigrations"] = json!(false);
    let created = app.create_tenant(&token, input).await;
    let id = created["tenant"]["id"].as_str().unwrap().to_owned();
    inject_failure_into_person_migration(&app, "tenant_halfway_org").await;

    let response = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": id, "target": "head" }),
            Some(&token),
        )
        .await;
    assert_eq!(response.error_code(), "INTERNAL");
    let names = migration::tenant_migration_names();
    let person = names
        .iter()
        .position(|n| n.ends_with("create_person"))
        .unwrap();
    let last_good = &names[person - 1];
    assert!(
        response.error_message().contains(last_good.as_str()),
        "{}",
        response.0
    );

    let status = app.graphql(STATUS, json!({ "id": id }), Some(&token)).await;
    assert_eq!(
        status.data()["migrationStatus"]["currentRevision"],
        json!(last_good)
    );
    let tenant = app.graphql(TENANT, json!({ "id": id }), Some(&token)).await;
    assert_eq!(tenant.data()["tenant"]["currentRevision"], json!(last_good));
    assert_eq!(tenant.data()["tenant"]["migrationsApplied"], false);
    assert!(
        !tables_of(&app, "tenant_halfway_org")
            .await
            .contains(&"person".to_owned())
    );
}

#[tokio::test]
async fn deactivate_reactivate_and_delete_keep_the_registry_truthful() {
    lifecycle_keeps_the_registry_truthful(&TestApp::spawn().await).await;
}

/// Create, deactivate, reactivate, delete with and without the schema: the registry, the
/// schemas and the audit trail agree at every step.
pub async fn lifecycle_keeps_the_registry_truthful(app: &TestApp) {
    let token = app.operator_token().await;
    let keep = app.create_tenant(&token, tenant_input("keep.org")).await;
    let drop = app.create_tenant(&token, tenant_input("drop.org")).await;
    let keep_id = keep["tenant"]["id"].as_str().unwrap();

    let deactivated = app
        .graphql(
            "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
            json!({ "id": keep_id }),
            Some(&token),
        )
        .await;
    assert_eq!(deactivated.data()["deactivateTenant"]["status"], "INACTIVE");
    let reactivated = app
        .graphql(
            "mutation($id: ID!) { reactivateTenant(id: $id) { status } }",
            json!({ "id": keep_id }),
            Some(&token),
        )
        .await;
    assert_eq!(reactivated.data()["reactivateTenant"]["status"], "ACTIVE");

    const DELETE: &str = "mutation($id: ID!, $drop: Boolean!, $confirm: String) { deleteTenant(id: $id, dropSchema: $drop, confirm: $confirm) { schemaName schemaDropped } }";
    let kept = app
        .graphql(
            DELETE,
            json!({ "id": keep_id, "drop": false }),
            Some(&token),
        )
        .await;
    assert_eq!(kept.data()["deleteTenant"]["schemaDropped"], false);
    assert!(schema_exists(app, "tenant_keep_org").await);
    let dropped = app
        .graphql(
            DELETE,
            json!({ "id": drop["tenant"]["id"], "drop": true, "confirm": "tenant_drop_org" }),
            Some(&token),
        )
        .await;
    assert_eq!(dropped.data()["deleteTenant"]["schemaDropped"], true);
    assert!(!schema_exists(app, "tenant_drop_org").await);

    // Deleted tenants are gone from the API; the kept one still reserves its domain.
    let gone = app
        .graphql(TENANT, json!({ "id": keep_id }), Some(&token))
        .await;
    assert!(gone.data()["tenant"].is_null());
    let again = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": tenant_input("keep.org") }),
            Some(&token),
        )
        .await;
    assert_eq!(again.error_code(), "CONFLICT");
    // A dropped tenant frees its domain.
    app.create_tenant(&token, tenant_input("drop.org")).await;

    let actions = app.scalar("SELECT count(DISTINCT action) FROM public.audit_events WHERE outcome = 'SUCCESS' \
         AND action IN ('tenant.create', 'tenant.deactivate', 'tenant.reactivate', 'tenant.delete')",
    )
    .await;
    assert_eq!(actions, 4);
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.audit_events WHERE actor_kind = 'PLATFORM' AND client_addr = '127.0.0.1'").await,
        app.scalar("SELECT count(*) FROM public.audit_events").await
    );
}

#[tokio::test]
async fn tenants_are_listed_in_pages_with_filters() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    for domain in ["alpha.org", "beta.org", "gamma.org", "delta-club"] {
        let mut input = tenant_input(domain);
        if domain.ends_with("club") {
            input["tenantType"] = json!("club");
        }
        app.create_tenant(&token, input).await;
    }
    const LIST: &str = r#"query($first: Int, $after: String, $filter: TenantFilter) {
        tenants(first: $first, after: $after, filter: $filter) {
          totalCount pageInfo { hasNextPage endCursor } edges { cursor node { domain } } nodes { domain }
        }
    }"#;
    let first = app.graphql(LIST, json!({ "first": 3 }), Some(&token)).await;
    let page = &first.data()["tenants"];
    assert_eq!(page["totalCount"], 4);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(page["nodes"].as_array().unwrap().len(), 3);
    let second = app
        .graphql(
            LIST,
            json!({ "first": 3, "after": page["pageInfo"]["endCursor"] }),
            Some(&token),
        )
        .await;
    assert_eq!(
        second.data()["tenants"]["nodes"],
        json!([{ "domain": "delta-club" }])
    );
    assert_eq!(second.data()["tenants"]["pageInfo"]["hasNextPage"], false);

    let clubs = app
        .graphql(
            LIST,
            json!({ "filter": { "tenantType": "club" } }),
            Some(&token),
        )
        .await;
    assert_eq!(clubs.data()["tenants"]["totalCount"], 1);
    let search = app
        .graphql(
            LIST,
            json!({ "filter": { "search": "GAMMA" } }),
            Some(&token),
        )
        .await;
    assert_eq!(
        search.data()["tenants"]["nodes"],
        json!([{ "domain": "gamma.org" }])
    );
    let wildcard = app
        .graphql(LIST, json!({ "filter": { "search": "%" } }), Some(&token))
        .await;
    assert_eq!(wildcard.data()["tenants"]["totalCount"], 0);
    let active = app
        .graphql(
            LIST,
            json!({ "filter": { "status": "ACTIVE" }, "first": 1000 }),
            Some(&token),
        )
        .await;
    assert_eq!(active.data()["tenants"]["totalCount"], 4);
    let bad_cursor = app
        .graphql(LIST, json!({ "after": "not-a-cursor" }), Some(&token))
        .await;
    assert_eq!(bad_cursor.error_code(), "BAD_USER_INPUT");
}

#[tokio::test]
async fn update_tenant_applies_the_creation_rules() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = app.create_tenant(&token, tenant_input("before.org")).await;
    let taken = app.create_tenant(&token, tenant_input("taken.org")).await;
    assert!(taken["tenant"]["id"].is_string());
    const UPDATE: &str = "mutation($id: ID!, $input: UpdateTenantInput!) { updateTenant(id: $id, input: $input) { domain tenantName schemaName settings { features limits { users } } } }";
    let id = created["tenant"]["id"].clone();
    let updated = app
        .graphql(
            UPDATE,
            json!({ "id": id, "input": { "tenantName": "Renamed", "domain": "after.org", "settings": { "limits": { "users": 20 } } } }),
            Some(&token),
        )
        .await;
    let tenant = &updated.data()["updateTenant"];
    assert_eq!(tenant["domain"], "after.org");
    assert_eq!(tenant["schemaName"], "tenant_before_org");
    assert_eq!(tenant["settings"]["limits"]["users"], 20);

    let bad = app
        .graphql(
            UPDATE,
            json!({ "id": id, "input": { "domain": "bad domain" } }),
            Some(&token),
        )
        .await;
    assert_eq!(bad.error_field(), Some("domain"));
    let clash = app
        .graphql(
            UPDATE,
            json!({ "id": id, "input": { "domain": "taken.org" } }),
            Some(&token),
        )
        .await;
    assert_eq!(clash.error_code(), "CONFLICT");
}

#[tokio::test]
async fn tenant_operations_need_a_platform_operator() {
    let app = TestApp::spawn().await;
    let anonymous = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": tenant_input("sneaky.org") }),
            None,
        )
        .await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
    let listing = app
        .graphql("{ tenants { totalCount } }", json!({}), None)
        .await;
    assert_eq!(listing.error_code(), "UNAUTHENTICATED");
    let status = app
        .graphql(STATUS, json!({ "id": uuid::Uuid::new_v4() }), None)
        .await;
    assert_eq!(status.error_code(), "UNAUTHENTICATED");
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 0);
}

#[tokio::test]
async fn unknown_tenants_are_not_found() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let response = app
        .graphql(STATUS, json!({ "id": uuid::Uuid::new_v4() }), Some(&token))
        .await;
    assert_eq!(response.error_code(), "NOT_FOUND");
    let malformed = app
        .graphql(STATUS, json!({ "id": "nope" }), Some(&token))
        .await;
    assert_eq!(malformed.error_code(), "BAD_USER_INPUT");
}

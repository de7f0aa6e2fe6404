//! `cloneTenant`: a new tenant with the source's structure and revision (and, when asked, its
//! rows), its own key and no session of the source's.

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::{Value, json};
use tenantgraph::auth::jwt::{Claims, JwtKeys};

use crate::helpers::{Gql, JWT_SECRET, TENANT_PASSWORD, TestApp, TestTenant, tenant_input};

const CLONE: &str = r#"
mutation($source: ID!, $input: CreateTenantInput!, $data: Boolean) {
  cloneTenant(sourceTenantId: $source, input: $input, includeData: $data) {
    tenant { id domain schemaName status schemaProvisioned migrationsApplied apiKeyPrefix
             settings { features limits { users storageGb } } }
    apiKey schemaCreated migrationsApplied message
    migrationStatus { currentRevision appliedMigrations pendingMigrations }
  }
}"#;

const DRIFT: &str = "query($id: ID!) { tenantDrift(tenantId: $id) { drifted revision differences { kind objectType name } } }";
const ME: &str = "{ me { kind tenant { id domain schemaName } } }";
const PEOPLE: &str = "{ people(first: 100) { totalCount nodes { id firstName lastName } } }";
const CREATE_PERSON: &str =
    "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id firstName } }";
const LOGIN: &str =
    "mutation($input: LoginInput!) { login(input: $input) { token refreshToken tenant { id } } }";
const REFRESH: &str =
    "mutation($token: String!) { refreshToken(refreshToken: $token) { token tenant { id } } }";

/// The tables of every tenant schema whose rows a clone copies (the ledger is migrated, not
/// copied; `tenant_settings` takes the new tenant's name and settings).
const COPIED_TABLES: [&str; 7] = [
    "users",
    "roles",
    "user_roles",
    "permissions",
    "role_permissions",
    "user_statuses",
    "person",
];

async fn clone(app: &TestApp, token: &str, source: &str, input: Value, data: bool) -> Gql {
    app.graphql(
        CLONE,
        json!({ "source": source, "input": input, "data": data }),
        Some(token),
    )
    .await
}

/// `source` cloned by its operator as a tenant of `domain`.
async fn clone_of(app: &TestApp, source: &TestTenant, domain: &str, data: bool) -> Gql {
    clone(
        app,
        &source.operator,
        &source.id,
        tenant_input(domain),
        data,
    )
    .await
}

/// A source tenant with an admin, a member, a viewer and `people` people.
async fn source_with_people(app: &TestApp, domain: &str, people: usize) -> TestTenant {
    let source = app.with_tenant(domain).await;
    for i in 0..people {
        let person = json!({ "input": { "firstName": format!("First{i}"), "lastName": "Source" } });
        let made = app
            .graphql(CREATE_PERSON, person, Some(&source.admin))
            .await;
        assert!(made.0["errors"].is_null(), "{}", made.0);
    }
    source
}

fn text(value: &Value) -> String {
    value.as_str().unwrap().to_owned()
}

async fn strings(app: &TestApp, sql: &str) -> Vec<String> {
    app.db()
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect()
}

async fn ledger(app: &TestApp, schema: &str) -> Vec<String> {
    strings(
        app,
        &format!("SELECT version FROM {schema}.seaql_migrations ORDER BY version"),
    )
    .await
}

async fn count(app: &TestApp, schema: &str, table: &str) -> i64 {
    app.scalar(&format!("SELECT count(*) FROM {schema}.{table}"))
        .await
}

/// Rows of `table` in one schema and not the other, both ways.
async fn rows_differing(app: &TestApp, a: &str, b: &str, table: &str) -> i64 {
    app.scalar(&format!(
        "SELECT (SELECT count(*) FROM (SELECT * FROM {a}.{table} EXCEPT SELECT * FROM {b}.{table}) x) \
              + (SELECT count(*) FROM (SELECT * FROM {b}.{table} EXCEPT SELECT * FROM {a}.{table}) y)"
    ))
    .await
}

async fn tenants_and_schemas(app: &TestApp) -> (i64, i64) {
    (
        app.scalar("SELECT count(*) FROM public.tenants").await,
        app.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'")
            .await,
    )
}

#[track_caller]
fn assert_ok(response: &Gql) {
    assert!(response.0["errors"].is_null(), "{}", response.0);
}

#[tokio::test]
async fn a_clone_has_the_sources_structure_and_revision_and_no_drift_and_none_of_its_rows() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 3).await;
    let op = &source.operator;

    let cloned = clone(&app, op, &source.id, tenant_input("copy.org"), false).await;
    assert_ok(&cloned);
    let result = &cloned.data()["cloneTenant"];
    assert_eq!(result["tenant"]["status"], "ACTIVE", "{result}");
    assert_eq!(result["tenant"]["schemaName"], "tenant_copy_org");
    assert_eq!(result["migrationsApplied"], true);
    assert_eq!(result["schemaCreated"], true);
    let head = migration::tenant_migration_names();
    assert_eq!(
        result["migrationStatus"]["currentRevision"].as_str(),
        head.last().map(String::as_str)
    );
    let id = text(&result["tenant"]["id"]);
    assert_ne!(id, source.id);

    assert_eq!(
        ledger(&app, "tenant_copy_org").await,
        ledger(&app, &source.schema).await
    );
    let drift = app.graphql(DRIFT, json!({ "id": id }), Some(op)).await;
    assert_eq!(drift.data()["tenantDrift"]["drifted"], false, "{}", drift.0);
    assert_eq!(
        drift.data()["tenantDrift"]["revision"].as_str(),
        head.last().map(String::as_str)
    );

    // Structure only: no user, person or session of the source; the seeded rows of a new tenant.
    assert_eq!(count(&app, "tenant_copy_org", "users").await, 0);
    assert_eq!(count(&app, "tenant_copy_org", "person").await, 0);
    for seeded in ["roles", "permissions", "role_permissions", "user_statuses"] {
        assert_eq!(
            count(&app, "tenant_copy_org", seeded).await,
            count(&app, &source.schema, seeded).await,
            "{seeded}"
        );
    }
    let display_name = strings(
        &app,
        "SELECT display_name FROM tenant_copy_org.tenant_settings",
    )
    .await;
    assert_eq!(display_name, ["Tenant copy.org"]);

    // Made and audited as a creation, naming its source.
    let audited = app
        .scalar(&format!(
            "SELECT count(*) FROM public.audit_events WHERE action = 'tenant.create' \
              AND outcome = 'SUCCESS' AND tenant_id = '{id}' \
              AND detail->>'clonedFrom' = '{}' AND detail->>'includeData' = 'false'",
            source.id
        ))
        .await;
    assert_eq!(audited, 1);

    // Its ledger is the migrator's: a fleet migration takes it down a step and back to head.
    app.migrate_tenant_down_and_up(&id, op).await;
    let drift = app.graphql(DRIFT, json!({ "id": id }), Some(op)).await;
    assert_eq!(drift.data()["tenantDrift"]["drifted"], false, "{}", drift.0);
}

#[tokio::test]
async fn with_data_every_row_is_copied_with_its_ids_and_only_then() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 5).await;
    let op = &source.operator;
    app.graphql(
        "mutation { updateTenantSettings(input: { timezone: \"Europe/Oslo\" }) { timezone } }",
        json!({}),
        Some(&source.admin),
    )
    .await;

    let mut input = tenant_input("copy.org");
    input["settings"] = json!({ "features": ["analytics"], "limits": { "users": 7 } });
    let cloned = clone(&app, op, &source.id, input, true).await;
    assert_ok(&cloned);
    let result = &cloned.data()["cloneTenant"];
    assert_eq!(result["tenant"]["status"], "ACTIVE", "{result}");
    assert_eq!(
        result["tenant"]["settings"],
        json!({ "features": ["analytics"], "limits": { "users": 7, "storageGb": null } })
    );

    for table in COPIED_TABLES {
        assert!(count(&app, &source.schema, table).await > 0, "{table}");
        assert_eq!(
            rows_differing(&app, &source.schema, "tenant_copy_org", table).await,
            0,
            "{table} differs"
        );
    }
    assert_eq!(count(&app, "tenant_copy_org", "person").await, 5);
    // The settings row is the source's, named and set up as the new tenant.
    let settings = strings(
        &app,
        "SELECT display_name || ' ' || timezone || ' ' || features::text || ' ' || (limits->>'users') \
           FROM tenant_copy_org.tenant_settings",
    )
    .await;
    assert_eq!(settings, [r#"Tenant copy.org Europe/Oslo ["analytics"] 7"#]);

    let drift = app
        .graphql(DRIFT, json!({ "id": result["tenant"]["id"] }), Some(op))
        .await;
    assert_eq!(drift.data()["tenantDrift"]["drifted"], false, "{}", drift.0);
    assert_eq!(
        ledger(&app, "tenant_copy_org").await,
        ledger(&app, &source.schema).await
    );
}

#[tokio::test]
async fn each_api_key_works_on_its_own_tenant_only() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 2).await;
    let cloned = clone_of(&app, &source, "copy.org", true).await;
    assert_ok(&cloned);
    let result = &cloned.data()["cloneTenant"];
    let clone_id = text(&result["tenant"]["id"]);
    let clone_key = text(&result["apiKey"]);
    assert_ne!(clone_key, source.api_key);
    assert_ne!(result["tenant"]["apiKeyPrefix"], Value::Null);

    let me = app.graphql_with_key(ME, json!({}), &clone_key).await;
    assert_eq!(me.data()["me"]["tenant"]["id"], clone_id.as_str());
    let me = app.graphql_with_key(ME, json!({}), &source.api_key).await;
    assert_eq!(me.data()["me"]["tenant"]["id"], source.id.as_str());

    // A person made with the clone's key lands in the clone only, and the other way round.
    let person = json!({ "input": { "firstName": "Keyed", "lastName": "Clone" } });
    assert_ok(
        &app.graphql_with_key(CREATE_PERSON, person, &clone_key)
            .await,
    );
    let person = json!({ "input": { "firstName": "Keyed", "lastName": "Source" } });
    assert_ok(
        &app.graphql_with_key(CREATE_PERSON, person, &source.api_key)
            .await,
    );
    let surnames =
        |schema: &str| format!("SELECT last_name FROM {schema}.person WHERE first_name = 'Keyed'");
    assert_eq!(strings(&app, &surnames("tenant_copy_org")).await, ["Clone"]);
    assert_eq!(strings(&app, &surnames(&source.schema)).await, ["Source"]);

    // Rotating or deactivating one tenant's key leaves the other's working.
    app.graphql(
        "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
        json!({ "id": source.id }),
        Some(&source.operator),
    )
    .await;
    let me = app.graphql_with_key(ME, json!({}), &source.api_key).await;
    assert_eq!(me.error_code(), "UNAUTHENTICATED");
    let me = app.graphql_with_key(ME, json!({}), &clone_key).await;
    assert_eq!(me.data()["me"]["tenant"]["id"], clone_id.as_str());
}

#[tokio::test]
async fn tokens_and_refresh_tokens_of_the_source_never_act_on_the_clone() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 1).await;
    let login = app
        .graphql(
            LOGIN,
            json!({ "input": { "email": "admin@origin.org", "password": TENANT_PASSWORD, "tenant": "origin.org" } }),
            None,
        )
        .await;
    let token = text(&login.data()["login"]["token"]);
    let refresh = text(&login.data()["login"]["refreshToken"]);

    let cloned = clone_of(&app, &source, "copy.org", true).await;
    assert_ok(&cloned);
    let clone_id = text(&cloned.data()["cloneTenant"]["tenant"]["id"]);
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.sessions WHERE tenant_id = '{clone_id}'"
        ))
        .await,
        0,
        "the clone starts without sessions"
    );

    // The source's token, made out to the clone (same user id, same session, the clone's id and
    // schema) and signed with the server's own secret: refused, the session is the source's.
    let keys = JwtKeys::new(
        &JWT_SECRET.to_owned().into(),
        std::time::Duration::from_secs(3600),
    );
    let claims = app.state.jwt.verify(&token).unwrap();
    let resigned = keys.sign(&claims).unwrap();
    let me = app.graphql(ME, json!({}), Some(&resigned)).await;
    assert_eq!(
        me.data()["me"]["tenant"]["id"],
        source.id.as_str(),
        "the re-signed token is accepted unchanged, so the refusal below is for the tenant alone"
    );
    let mut aimed = Claims::clone(&claims);
    aimed.tid = Some(clone_id.parse().unwrap());
    aimed.schema = Some("tenant_copy_org".into());
    let me = app
        .graphql(ME, json!({}), Some(&keys.sign(&aimed).unwrap()))
        .await;
    assert_eq!(me.error_code(), "UNAUTHENTICATED", "{}", me.0);
    let people = app
        .graphql(PEOPLE, json!({}), Some(&keys.sign(&aimed).unwrap()))
        .await;
    assert_eq!(people.error_code(), "UNAUTHENTICATED");

    // The refresh token continues the source's session, in the source.
    let refreshed = app
        .graphql(REFRESH, json!({ "token": refresh }), None)
        .await;
    assert_eq!(
        refreshed.data()["refreshToken"]["tenant"]["id"],
        source.id.as_str()
    );
    let me = app
        .graphql(
            ME,
            json!({}),
            Some(refreshed.data()["refreshToken"]["token"].as_str().unwrap()),
        )
        .await;
    assert_eq!(me.data()["me"]["tenant"]["id"], source.id.as_str());
}

#[tokio::test]
async fn users_of_the_source_log_in_to_the_clone_with_their_passwords_in_sessions_of_its_own() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 2).await;
    let cloned = clone_of(&app, &source, "copy.org", true).await;
    assert_ok(&cloned);
    let clone_id = text(&cloned.data()["cloneTenant"]["tenant"]["id"]);

    let login = app
        .tenant_login("copy.org", "member@origin.org", TENANT_PASSWORD)
        .await;
    assert_eq!(login.data()["login"]["user"]["roles"], json!(["member"]));
    let member = text(&login.data()["login"]["token"]);
    let me = app.graphql(ME, json!({}), Some(&member)).await;
    assert_eq!(me.data()["me"]["tenant"]["id"], clone_id.as_str());
    let people = app.graphql(PEOPLE, json!({}), Some(&member)).await;
    assert_eq!(people.data()["people"]["totalCount"], 2);

    // Ending the clone's session leaves the source's sessions of the same user alone.
    assert_ok(
        &app.graphql("mutation { logout }", json!({}), Some(&member))
            .await,
    );
    let me = app.graphql(ME, json!({}), Some(&member)).await;
    assert_eq!(me.error_code(), "UNAUTHENTICATED");
    let me = app.graphql(ME, json!({}), Some(&source.member)).await;
    assert_eq!(me.data()["me"]["tenant"]["id"], source.id.as_str());

    // Without the data, the source's users do not exist in the clone.
    let bare = clone_of(&app, &source, "bare.org", false).await;
    assert_ok(&bare);
    let login = app
        .tenant_login("bare.org", "member@origin.org", TENANT_PASSWORD)
        .await;
    assert_eq!(login.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn sequences_continue_after_the_copy_and_template_roles_are_added_on_top() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 1).await;
    // Move the source's role sequence past its largest id: the clone continues after both.
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO {0}.roles (name, description) VALUES ('temp1', 't'), ('temp2', 't'); \
             DELETE FROM {0}.roles WHERE name = 'temp2'",
            source.schema
        ))
        .await
        .unwrap();
    let source_max = app
        .scalar(&format!(
            "SELECT max(id)::int8 FROM {}.roles",
            source.schema
        ))
        .await;
    let template = app
        .graphql(
            "mutation($input: TenantTemplateInput!) { createTenantTemplate(input: $input) { id } }",
            json!({ "input": { "name": "Auditing", "roles": [{ "name": "auditor", "permissions": ["people:read"] }] } }),
            Some(&source.operator),
        )
        .await;
    assert_ok(&template);
    let mut input = tenant_input("copy.org");
    input["template"] = json!("Auditing");
    input["admin"] = json!({ "email": "chief@copy.org", "password": TENANT_PASSWORD });
    let cloned = clone(&app, &source.operator, &source.id, input, true).await;
    assert_ok(&cloned);

    let auditor = app
        .scalar("SELECT id::int8 FROM tenant_copy_org.roles WHERE name = 'auditor'")
        .await;
    assert_eq!(auditor, source_max + 2, "after the source's sequence");
    // The new first admin is made beside the copied users.
    let chief = app
        .tenant_login("copy.org", "chief@copy.org", TENANT_PASSWORD)
        .await;
    assert_eq!(chief.data()["login"]["user"]["roles"], json!(["admin"]));
    assert_eq!(
        count(&app, "tenant_copy_org", "users").await,
        count(&app, &source.schema, "users").await + 1
    );

    // A person inserted into the clone, by API and by a default id.
    let admin = app.tenant_token("copy.org", "admin@origin.org").await;
    let person = json!({ "input": { "firstName": "New", "lastName": "Person" } });
    assert_ok(&app.graphql(CREATE_PERSON, person, Some(&admin)).await);
    app.db()
        .execute_unprepared(
            "INSERT INTO tenant_copy_org.roles (name, description) VALUES ('later', 'x')",
        )
        .await
        .unwrap();
    assert_eq!(count(&app, "tenant_copy_org", "person").await, 2);
}

#[tokio::test]
async fn changes_to_the_clone_leave_the_source_alone_and_the_other_way_round() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 3).await;
    let cloned = clone_of(&app, &source, "copy.org", true).await;
    assert_ok(&cloned);
    let admin = app.tenant_token("copy.org", "admin@origin.org").await;
    let people = app.graphql(PEOPLE, json!({}), Some(&admin)).await;
    let ids: Vec<String> = people.data()["people"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| text(&p["id"]))
        .collect();
    assert_eq!(ids.len(), 3);
    assert_ok(
        &app.graphql(
            "mutation($id: ID!) { updatePerson(id: $id, input: { firstName: \"Changed\" }) { id } }",
            json!({ "id": ids[0] }),
            Some(&admin),
        )
        .await,
    );
    assert_ok(
        &app.graphql(
            "mutation($id: ID!) { deletePerson(id: $id) }",
            json!({ "id": ids[1] }),
            Some(&admin),
        )
        .await,
    );
    app.db()
        .execute_unprepared("UPDATE tenant_copy_org.users SET name = 'Renamed in the clone'")
        .await
        .unwrap();

    let in_source = app.graphql(PEOPLE, json!({}), Some(&source.admin)).await;
    assert_eq!(in_source.data()["people"]["totalCount"], 3);
    let names: Vec<&str> = in_source.data()["people"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["firstName"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"Changed"), "{names:?}");
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM {}.users WHERE name = 'Renamed in the clone'",
            source.schema
        ))
        .await,
        0
    );

    // And the source's changes stay out of the clone.
    let person = json!({ "input": { "firstName": "Later", "lastName": "Source" } });
    assert_ok(
        &app.graphql(CREATE_PERSON, person, Some(&source.admin))
            .await,
    );
    let in_clone = app.graphql(PEOPLE, json!({}), Some(&admin)).await;
    assert_eq!(in_clone.data()["people"]["totalCount"], 2);
}

#[tokio::test]
async fn bad_sources_and_bad_input_are_refused_field_by_field_and_nothing_is_made() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 1).await;
    let op = &source.operator;
    let unprovisioned = app
        .create_tenant(
            op,
            json!({ "tenantName": "Later", "domain": "later.org", "email": "a@later.org", "provisionSchema": false }),
        )
        .await;
    let inactive = app.with_tenant("asleep.org").await;
    app.graphql(
        "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
        json!({ "id": inactive.id }),
        Some(op),
    )
    .await;
    let before = tenants_and_schemas(&app).await;

    let unknown = clone(
        &app,
        op,
        &uuid::Uuid::new_v4().to_string(),
        tenant_input("copy.org"),
        false,
    )
    .await;
    assert_eq!(unknown.error_code(), "NOT_FOUND", "{}", unknown.0);

    let cases: Vec<(&str, Value, bool, &str, &str)> = vec![
        (
            "not-an-id",
            tenant_input("copy.org"),
            false,
            "BAD_USER_INPUT",
            "sourceTenantId",
        ),
        (
            &inactive.id,
            tenant_input("copy.org"),
            false,
            "BAD_USER_INPUT",
            "sourceTenantId",
        ),
        (
            unprovisioned["tenant"]["id"].as_str().unwrap(),
            tenant_input("copy.org"),
            false,
            "BAD_USER_INPUT",
            "sourceTenantId",
        ),
        (
            &source.id,
            tenant_input("origin.org"),
            false,
            "CONFLICT",
            "domain",
        ),
        (
            &source.id,
            json!({ "tenantName": "Copy", "domain": "copy.org", "email": "a@copy.org", "schemaName": source.schema }),
            true,
            "CONFLICT",
            "schemaName",
        ),
        (
            &source.id,
            json!({ "tenantName": "Copy", "domain": "copy.org", "email": "a@copy.org", "provisionSchema": false }),
            false,
            "BAD_USER_INPUT",
            "provisionSchema",
        ),
        (
            &source.id,
            json!({ "tenantName": "Copy", "domain": "copy.org", "email": "not-an-email" }),
            false,
            "BAD_USER_INPUT",
            "email",
        ),
        (
            &source.id,
            json!({ "tenantName": "Copy", "domain": "copy.org", "email": "a@copy.org", "template": "nope" }),
            false,
            "BAD_USER_INPUT",
            "template",
        ),
        (
            &source.id,
            json!({ "tenantName": "Copy", "domain": "copy.org", "email": "a@copy.org",
                    "admin": { "email": "member@origin.org", "password": TENANT_PASSWORD } }),
            true,
            "CONFLICT",
            "admin.email",
        ),
    ];
    for (source_id, input, data, code, field) in cases {
        let refused = clone(&app, op, source_id, input.clone(), data).await;
        assert_eq!(refused.error_code(), code, "{input}: {}", refused.0);
        assert_eq!(refused.error_field(), Some(field), "{input}: {}", refused.0);
        assert!(refused.0["data"].is_null(), "{}", refused.0);
        assert_eq!(tenants_and_schemas(&app).await, before, "{input}");
    }

    // Every fault at once: the source's and the input's.
    let many = clone(
        &app,
        op,
        "not-an-id",
        json!({ "tenantName": " ", "domain": "copy.org", "email": "x", "runMigrations": false }),
        false,
    )
    .await;
    assert_eq!(
        many.error_fields(),
        ["email", "runMigrations", "sourceTenantId", "tenantName"]
    );

    // The same admin email without the data is a new user of an empty tenant: fine.
    let fine = clone(
        &app,
        op,
        &source.id,
        json!({ "tenantName": "Copy", "domain": "copy.org", "email": "a@copy.org",
                "admin": { "email": "member@origin.org", "password": TENANT_PASSWORD } }),
        false,
    )
    .await;
    assert_ok(&fine);
}

#[tokio::test]
async fn only_platform_operators_may_clone() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 0).await;
    let before = tenants_and_schemas(&app).await;
    let variables = json!({ "source": source.id, "input": tenant_input("copy.org"), "data": true });
    for token in [&source.admin, &source.member] {
        let refused = app.graphql(CLONE, variables.clone(), Some(token)).await;
        assert_eq!(refused.error_code(), "FORBIDDEN", "{}", refused.0);
    }
    let refused = app
        .graphql_with_key(CLONE, variables.clone(), &source.api_key)
        .await;
    assert_eq!(refused.error_code(), "FORBIDDEN", "{}", refused.0);
    let refused = app.graphql(CLONE, variables, None).await;
    assert_eq!(refused.error_code(), "UNAUTHENTICATED", "{}", refused.0);
    assert_eq!(tenants_and_schemas(&app).await, before);
}

#[tokio::test]
async fn a_copy_that_fails_midway_leaves_no_tenant_and_no_schema() {
    let app = TestApp::spawn().await;
    let source = source_with_people(&app, "origin.org", 2).await;
    let before = tenants_and_schemas(&app).await;

    // Another session holds the source's person table: the copy has made the schema, migrated
    // it and copied the tables before person when its lock wait runs out.
    let holder = app.db().begin().await.unwrap();
    holder
        .execute_unprepared(&format!(
            "LOCK TABLE {}.person IN ACCESS EXCLUSIVE MODE",
            source.schema
        ))
        .await
        .unwrap();
    let failed = clone_of(&app, &source, "copy.org", true).await;
    holder.rollback().await.unwrap();
    assert_eq!(failed.error_code(), "INTERNAL", "{}", failed.0);
    assert!(
        failed
            .error_message()
            .contains("everything made for this tenant was removed"),
        "{}",
        failed.0
    );
    assert_eq!(tenants_and_schemas(&app).await, before);
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.audit_events WHERE action = 'tenant.create' AND outcome = 'FAILURE'"
        )
        .await,
        1
    );

    // A source altered by hand cannot give its rows to a schema of its revision.
    app.db()
        .execute_unprepared(&format!(
            "ALTER TABLE {}.person ADD COLUMN nickname text",
            source.schema
        ))
        .await
        .unwrap();
    let drifted = clone_of(&app, &source, "copy.org", true).await;
    assert_eq!(drifted.error_code(), "INTERNAL", "{}", drifted.0);
    assert!(
        drifted.error_message().contains("tenantDrift"),
        "{}",
        drifted.0
    );
    assert_eq!(tenants_and_schemas(&app).await, before);

    // Its structure clones as the revision has it; the same domain is free again.
    let bare = clone_of(&app, &source, "copy.org", false).await;
    assert_ok(&bare);
    let drift = app
        .graphql(
            DRIFT,
            json!({ "id": bare.data()["cloneTenant"]["tenant"]["id"] }),
            Some(&source.operator),
        )
        .await;
    assert_eq!(drift.data()["tenantDrift"]["drifted"], false);
}

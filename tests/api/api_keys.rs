//! Scoped API keys: a key acts with its tenant's admin permissions, but never beyond its scope
//! (by default everything except `users:write`); the scope is set at creation and at rotation,
//! shown on the tenant (never the key), and a narrowed scope counts on every server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{CREATE_TENANT, Gql, TestApp, tenant_input};

const CREATE_USER: &str = "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }";
const ASSIGN_ROLE: &str =
    "mutation($id: ID!) { assignRole(userId: $id, role: \"admin\") { roles } }";
const PEOPLE: &str = "{ people(first: 1) { totalCount } }";
const CREATE_PERSON: &str =
    "mutation { createPerson(input: { firstName: \"Ruth\", lastName: \"Moab\" }) { id } }";
const ROTATE: &str = "mutation($id: ID!, $permissions: [String!]) { rotateApiKey(tenantId: $id, permissions: $permissions) }";
const SCOPE: &str = "query($id: ID!) { tenant(id: $id) { apiKeyPrefix apiKeyPermissions } }";

const DEFAULT_SCOPE: [&str; 6] = [
    "users:read",
    "people:read",
    "people:write",
    "roles:read",
    "settings:read",
    "settings:write",
];

fn assert_forbidden(response: &Gql) {
    assert_eq!(response.error_code(), "FORBIDDEN", "{}", response.0);
}

fn assert_ok(response: &Gql) {
    assert!(response.0["errors"].is_null(), "{}", response.0);
}

async fn scope(app: &TestApp, operator: &str, tenant: &str) -> Value {
    app.graphql(SCOPE, json!({ "id": tenant }), Some(operator))
        .await
        .data()["tenant"]["apiKeyPermissions"]
        .clone()
}

async fn rotate(app: &TestApp, operator: &str, tenant: &str, permissions: Value) -> Gql {
    app.graphql(
        ROTATE,
        json!({ "id": tenant, "permissions": permissions }),
        Some(operator),
    )
    .await
}

fn key_of(rotated: &Gql) -> String {
    rotated.data()["rotateApiKey"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn api_key_by_default_cannot_create_users_or_give_roles_but_works_with_people() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("scoped.example").await;
    let key = &tenant.api_key;

    let user =
        json!({ "input": { "email": "intruder@scoped.example", "password": "intruder-password" } });
    assert_forbidden(&app.graphql_with_key(CREATE_USER, user, key).await);
    let member = app
        .graphql("{ users { id email } }", json!({}), Some(&tenant.admin))
        .await;
    let member_id = member.data()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|user| user["email"] == "member@scoped.example")
        .unwrap()["id"]
        .clone();
    assert_forbidden(
        &app.graphql_with_key(ASSIGN_ROLE, json!({ "id": member_id }), key)
            .await,
    );
    // Nothing was made or given.
    let roles = app
        .graphql("{ users { email roles } }", json!({}), Some(&tenant.admin))
        .await;
    assert_eq!(roles.data()["users"].as_array().unwrap().len(), 3);

    // Everything else an admin may do, it may.
    assert_ok(&app.graphql_with_key(CREATE_PERSON, json!({}), key).await);
    assert_ok(&app.graphql_with_key(PEOPLE, json!({}), key).await);
    assert_ok(
        &app.graphql_with_key("{ users { id } roles { name } }", json!({}), key)
            .await,
    );

    // The scope is shown; the key never is.
    let shown = app
        .graphql(SCOPE, json!({ "id": tenant.id }), Some(&tenant.operator))
        .await;
    assert_eq!(
        shown.data()["tenant"]["apiKeyPermissions"],
        json!(DEFAULT_SCOPE)
    );
    assert!(!shown.0.to_string().contains(key.as_str()));
}

#[tokio::test]
async fn api_key_scoped_at_creation_cannot_go_beyond_its_scope() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let mut input = tenant_input("reader.example");
    input["apiKeyPermissions"] = json!(["people:read"]);
    let created = app.create_tenant(&operator, input).await;
    let key = created["apiKey"].as_str().unwrap();
    let tenant = created["tenant"]["id"].as_str().unwrap();

    assert_ok(&app.graphql_with_key(PEOPLE, json!({}), key).await);
    assert_forbidden(&app.graphql_with_key(CREATE_PERSON, json!({}), key).await);
    assert_forbidden(
        &app.graphql_with_key("{ users { id } }", json!({}), key)
            .await,
    );
    assert_eq!(scope(&app, &operator, tenant).await, json!(["people:read"]));
}

#[tokio::test]
async fn api_key_rotation_sets_or_keeps_the_scope_and_unknown_codes_are_refused() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (tenant, old_key) = app.tenant_with_admin(&operator, "rotated.example").await;

    // A wider scope: the new key may create users; the old key is gone.
    let rotated = rotate(
        &app,
        &operator,
        &tenant,
        json!(["users:write", "people:read", "users:write"]),
    )
    .await;
    let key = key_of(&rotated);
    let user =
        json!({ "input": { "email": "robot@rotated.example", "password": "robot-password-1" } });
    assert_ok(&app.graphql_with_key(CREATE_USER, user, &key).await);
    assert_forbidden(&app.graphql_with_key(CREATE_PERSON, json!({}), &key).await);
    assert_eq!(
        app.graphql_with_key(PEOPLE, json!({}), &old_key)
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        scope(&app, &operator, &tenant).await,
        json!(["users:write", "people:read"])
    );

    // Rotating without permissions keeps the scope.
    let key = key_of(&rotate(&app, &operator, &tenant, Value::Null).await);
    assert_eq!(
        scope(&app, &operator, &tenant).await,
        json!(["users:write", "people:read"])
    );
    assert_ok(&app.graphql_with_key(PEOPLE, json!({}), &key).await);

    // An empty scope: the key authenticates and may do nothing.
    let key = key_of(&rotate(&app, &operator, &tenant, json!([])).await);
    assert_forbidden(&app.graphql_with_key(PEOPLE, json!({}), &key).await);

    // Unknown codes are refused and change nothing: the current key still works.
    let refused = rotate(
        &app,
        &operator,
        &tenant,
        json!(["people:read", "people:admin"]),
    )
    .await;
    assert_eq!(refused.error_code(), "BAD_USER_INPUT", "{}", refused.0);
    assert_eq!(refused.error_field(), Some("permissions"), "{}", refused.0);
    assert!(refused.error_message().contains("people:admin"));
    assert_forbidden(&app.graphql_with_key(PEOPLE, json!({}), &key).await);

    let mut input = tenant_input("unknown.example");
    input["apiKeyPermissions"] = json!(["everything"]);
    let refused = app
        .graphql(CREATE_TENANT, json!({ "input": input }), Some(&operator))
        .await;
    assert_eq!(refused.error_code(), "BAD_USER_INPUT", "{}", refused.0);
    assert_eq!(
        refused.error_field(),
        Some("apiKeyPermissions"),
        "{}",
        refused.0
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE domain = 'unknown.example'")
            .await,
        0
    );
}

#[tokio::test]
async fn api_key_a_narrowed_scope_counts_on_another_server_within_two_seconds() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.database.url, |_| {}).await;
    let operator = a.operator_token().await;
    let (tenant, _) = a.tenant_with_admin(&operator, "narrowed.example").await;
    let wide = key_of(
        &rotate(
            &a,
            &operator,
            &tenant,
            json!(["people:read", "people:write"]),
        )
        .await,
    );
    // B has the tenant and its key cached.
    assert_ok(&b.graphql_with_key(CREATE_PERSON, json!({}), &wide).await);

    let narrow = key_of(&rotate(&a, &operator, &tenant, json!(["people:read"])).await);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let read = b.graphql_with_key(PEOPLE, json!({}), &narrow).await;
        if read.0["errors"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never took the new key: {}",
            read.0
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Once B knows the new key, it knows its scope; the wide key is gone there too.
    assert_forbidden(&b.graphql_with_key(CREATE_PERSON, json!({}), &narrow).await);
    assert_eq!(
        b.graphql_with_key(CREATE_PERSON, json!({}), &wide)
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
}

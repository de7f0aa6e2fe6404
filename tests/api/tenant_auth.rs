//! Tenant logins, tenant tokens and API keys: who gets in, and where they can reach.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use tenantgraph::auth::jwt::{Claims, JwtKeys, TokenKind};

use crate::{
    helpers::{Gql, JWT_SECRET, TestApp},
    tenants::{create_tenant, tenant_input},
};

const ME: &str = "{ me { kind user { id email roles } tenant { id domain schemaName } } }";
pub const ADMIN_PASSWORD: &str = "tenant-admin-password";

/// A tenant with an admin `admin@<domain>`; returns (tenant id, API key).
pub async fn tenant_with_admin(app: &TestApp, operator: &str, domain: &str) -> (String, String) {
    let mut input = tenant_input(domain);
    input["admin"] = json!({ "email": format!("admin@{domain}"), "password": ADMIN_PASSWORD });
    let created = create_tenant(app, operator, input).await;
    (
        created["tenant"]["id"].as_str().unwrap().to_owned(),
        created["apiKey"].as_str().unwrap().to_owned(),
    )
}

pub async fn tenant_login(app: &TestApp, tenant: &str, email: &str, password: &str) -> Gql {
    app.graphql(
        "mutation($input: LoginInput!) { login(input: $input) { token expiresAt user { id email roles } tenant { domain schemaName } } }",
        json!({ "input": { "email": email, "password": password, "tenant": tenant } }),
        None,
    )
    .await
}

pub async fn tenant_token(app: &TestApp, domain: &str) -> String {
    tenant_login(app, domain, &format!("admin@{domain}"), ADMIN_PASSWORD)
        .await
        .data()["login"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn with_api_key(app: &TestApp, key: &str, query: &str) -> Gql {
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("x-api-key", key)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    Gql(response.json().await.unwrap())
}

#[tokio::test]
async fn a_tenant_admin_logs_in_by_domain_or_schema_and_me_names_the_tenant() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    tenant_with_admin(&app, &operator, "login.church").await;

    for tenant in ["login.church", "tenant_login_church", "LOGIN.church"] {
        let login = tenant_login(&app, tenant, "Admin@Login.Church", ADMIN_PASSWORD).await;
        let payload = &login.data()["login"];
        assert_eq!(payload["user"]["roles"], json!(["admin"]));
        assert_eq!(payload["tenant"]["schemaName"], "tenant_login_church");
        let me = app.graphql(ME, json!({}), payload["token"].as_str()).await;
        assert_eq!(me.data()["me"]["kind"], "TENANT_USER");
        assert_eq!(me.data()["me"]["user"]["email"], "admin@login.church");
        assert_eq!(me.data()["me"]["tenant"]["domain"], "login.church");
    }
}

#[tokio::test]
async fn wrong_password_unknown_email_unknown_tenant_and_inactive_user_all_get_the_same_error() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    tenant_with_admin(&app, &operator, "same.church").await;
    app.db()
        .execute_unprepared(
            "INSERT INTO tenant_same_church.users (email, password_hash, status_id) \
             SELECT 'inactive@same.church', password_hash, 2 FROM tenant_same_church.users LIMIT 1",
        )
        .await
        .unwrap();

    let attempts = [
        ("same.church", "admin@same.church", "wrong-password"),
        ("same.church", "nobody@same.church", ADMIN_PASSWORD),
        ("nowhere.church", "admin@same.church", ADMIN_PASSWORD),
        ("same.church", "inactive@same.church", ADMIN_PASSWORD),
    ];
    let mut messages = Vec::new();
    for (tenant, email, password) in attempts {
        let response = tenant_login(&app, tenant, email, password).await;
        assert_eq!(response.error_code(), "UNAUTHENTICATED", "{tenant} {email}");
        messages.push(response.error_message().to_owned());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[tokio::test]
async fn a_deactivated_tenant_refuses_logins_tokens_and_keys_at_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (id, key) = tenant_with_admin(&app, &operator, "paused.church").await;
    let token = tenant_token(&app, "paused.church").await;
    assert_eq!(
        app.graphql(ME, json!({}), Some(&token)).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    assert_eq!(
        with_api_key(&app, &key, "{ me { kind } }").await.data()["me"]["kind"],
        "API_KEY"
    );

    app.graphql(
        "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
        json!({ "id": id }),
        Some(&operator),
    )
    .await
    .data();

    assert_eq!(
        app.graphql(ME, json!({}), Some(&token)).await.error_code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        with_api_key(&app, &key, "{ me { kind } }")
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
    let login = tenant_login(&app, "paused.church", "admin@paused.church", ADMIN_PASSWORD).await;
    assert_eq!(login.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_rotated_api_key_stops_working_and_the_new_one_works() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (id, old_key) = tenant_with_admin(&app, &operator, "rotate.church").await;
    let me = with_api_key(
        &app,
        &old_key,
        "{ me { kind user { id } tenant { domain } } }",
    )
    .await;
    assert_eq!(me.data()["me"]["kind"], "API_KEY");
    assert!(me.data()["me"]["user"].is_null());
    assert_eq!(me.data()["me"]["tenant"]["domain"], "rotate.church");

    let rotated = app
        .graphql(
            "mutation($id: ID!) { rotateApiKey(tenantId: $id) }",
            json!({ "id": id }),
            Some(&operator),
        )
        .await;
    let new_key = rotated.data()["rotateApiKey"].as_str().unwrap();
    assert_eq!(
        with_api_key(&app, &old_key, "{ me { kind } }")
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        with_api_key(&app, new_key, "{ me { kind } }").await.data()["me"]["kind"],
        "API_KEY"
    );
    assert_eq!(
        with_api_key(
            &app,
            "tk_0000000000000000000000000000000000000000000000000000000000000000",
            "{ me { kind } }"
        )
        .await
        .error_code(),
        "UNAUTHENTICATED"
    );
}

fn forged(app_claims: &Claims, change: impl FnOnce(&mut Claims), secret: &str) -> String {
    let mut claims = app_claims.clone();
    change(&mut claims);
    JwtKeys::new(
        &secret.to_owned().into(),
        std::time::Duration::from_secs(600),
    )
    .sign(&claims)
    .unwrap()
}

#[tokio::test]
async fn forged_expired_or_mismatched_tenant_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    tenant_with_admin(&app, &operator, "one.church").await;
    let (other_id, _) = tenant_with_admin(&app, &operator, "two.church").await;
    let token = tenant_token(&app, "one.church").await;
    let claims = app.state.jwt.verify(&token).unwrap();
    assert_eq!(claims.kind, TokenKind::TenantUser);

    let other_key = "another-secret-another-secret-another-secret-xx";
    let now = chrono::Utc::now().timestamp();
    let b64 = |value: &Value| crate::tokens::base64url(value.to_string().as_bytes());
    let payload = serde_json::to_value(&claims).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&payload)
    );
    let mut tampered_payload = payload.clone();
    tampered_payload["schema"] = json!("tenant_two_church");
    let signature = token.rsplit('.').next().unwrap();
    let tampered = format!(
        "{}.{}.{signature}",
        token.split('.').next().unwrap(),
        b64(&tampered_payload)
    );

    let bad_tokens = [
        (
            "re-signed with another key",
            forged(&claims, |_| {}, other_key),
        ),
        ("alg none", alg_none),
        ("schema changed without re-signing", tampered),
        (
            "validly signed but tid of another tenant",
            forged(
                &claims,
                |c| c.tid = Some(other_id.parse().unwrap()),
                JWT_SECRET,
            ),
        ),
        (
            "validly signed but schema of another tenant",
            forged(
                &claims,
                |c| c.schema = Some("tenant_two_church".into()),
                JWT_SECRET,
            ),
        ),
        (
            "expired",
            forged(&claims, |c| c.exp = now - 120, JWT_SECRET),
        ),
        (
            "wrong audience",
            forged(&claims, |c| c.aud = "elsewhere".into(), JWT_SECRET),
        ),
        (
            "tenant kind without tenant claims",
            forged(&claims, |c| c.tid = None, JWT_SECRET),
        ),
    ];
    for (what, bad) in bad_tokens {
        let response = app.graphql(ME, json!({}), Some(&bad)).await;
        assert_eq!(
            response.error_code(),
            "UNAUTHENTICATED",
            "{what}: {}",
            response.0
        );
    }
    // The genuine token still works.
    assert_eq!(
        app.graphql(ME, json!({}), Some(&token)).await.data()["me"]["kind"],
        "TENANT_USER"
    );
}

#[tokio::test]
async fn tenant_credentials_never_reach_platform_operations() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (id, key) = tenant_with_admin(&app, &operator, "reach.church").await;
    let token = tenant_token(&app, "reach.church").await;
    for query in [
        "{ tenants { totalCount } }".to_owned(),
        format!("{{ migrationStatus(tenantId: \"{id}\") {{ schemaName }} }}"),
        "{ orphanSchemas }".to_owned(),
    ] {
        assert_eq!(
            app.graphql(&query, json!({}), Some(&token))
                .await
                .error_code(),
            "FORBIDDEN",
            "{query}"
        );
        assert_eq!(
            with_api_key(&app, &key, &query).await.error_code(),
            "FORBIDDEN",
            "{query}"
        );
    }
    let deactivate = app
        .graphql(
            "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    assert_eq!(deactivate.error_code(), "FORBIDDEN");
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_and_say_how_long_to_wait() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    tenant_with_admin(&app, &operator, "throttle.church").await;
    for _ in 0..tenantgraph::auth::throttle::MAX_FAILURES_PER_ACCOUNT {
        let response = tenant_login(
            &app,
            "throttle.church",
            "admin@throttle.church",
            "wrong-password",
        )
        .await;
        assert_eq!(response.error_code(), "UNAUTHENTICATED");
    }
    // Now even the right password waits.
    let limited = tenant_login(
        &app,
        "throttle.church",
        "admin@throttle.church",
        ADMIN_PASSWORD,
    )
    .await;
    assert_eq!(limited.error_code(), "RATE_LIMITED");
    assert!(
        limited.0["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test]
async fn a_pooled_connection_carries_no_tenant_search_path_into_the_next_request() {
    let app = TestApp::spawn_with(|env| {
        env.insert("DATABASE_MAX_CONNECTIONS".into(), "1".into());
    })
    .await;
    let operator = app.operator_token().await;
    tenant_with_admin(&app, &operator, "pool.church").await;
    let token = tenant_token(&app, "pool.church").await;

    let me = app.graphql(ME, json!({}), Some(&token)).await;
    assert_eq!(
        me.data()["me"]["tenant"]["schemaName"],
        "tenant_pool_church"
    );
    // The same single connection, now for platform work: no tenant schema on its path.
    let listing = app
        .graphql("{ tenants { totalCount } }", json!({}), Some(&operator))
        .await;
    assert_eq!(listing.data()["tenants"]["totalCount"], 1);
    let search_path = app
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SHOW search_path",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert_eq!(search_path, "pg_catalog");
    // Unpinned, tenant tables are unreachable: the query fails instead of finding any tenant.
    let unpinned = app
        .db()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM users",
        ))
        .await;
    assert!(unpinned.is_err());
}

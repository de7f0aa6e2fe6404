//! Tenant logins, tenant tokens and API keys: who gets in, and where they can reach.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use tenantgraph::{
    auth::jwt::{Claims, JwtKeys, TokenKind},
    error::AppError,
};

use crate::helpers::{JWT_SECRET, TENANT_PASSWORD as ADMIN_PASSWORD, TestApp, TestTenant, WsEvent};

const ME: &str = "{ me { kind user { id email roles } tenant { id domain schemaName } } }";

#[tokio::test]
async fn a_tenant_admin_logs_in_by_domain_or_schema_and_me_names_the_tenant() {
    tenant_admin_logs_in_by_domain_or_schema(&TestApp::spawn().await).await;
}

/// A tenant admin logs in by domain, schema name or any case of them; `me` names the tenant.
pub async fn tenant_admin_logs_in_by_domain_or_schema(app: &TestApp) {
    app.with_tenant("login.church").await;

    for tenant in ["login.church", "tenant_login_church", "LOGIN.church"] {
        let login = app
            .tenant_login(tenant, "Admin@Login.Church", ADMIN_PASSWORD)
            .await;
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
    app.with_tenant("same.church").await;
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
        let response = app.tenant_login(tenant, email, password).await;
        assert_eq!(response.error_code(), "UNAUTHENTICATED", "{tenant} {email}");
        messages.push(response.error_message().to_owned());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "{messages:?}");
}

#[tokio::test]
async fn a_deactivated_tenant_refuses_logins_tokens_and_keys_at_once() {
    let app = TestApp::spawn().await;
    let TestTenant {
        id,
        domain,
        operator,
        admin: token,
        api_key: key,
        ..
    } = app.with_tenant("paused.church").await;
    assert_eq!(
        app.graphql(ME, json!({}), Some(&token)).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    assert_eq!(
        app.graphql_with_key("{ me { kind } }", json!({}), &key)
            .await
            .data()["me"]["kind"],
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
        app.graphql_with_key("{ me { kind } }", json!({}), &key)
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
    let login = app
        .tenant_login(&domain, &format!("admin@{domain}"), ADMIN_PASSWORD)
        .await;
    assert_eq!(login.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_rotated_api_key_stops_working_and_the_new_one_works() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let TestTenant {
        id,
        api_key: old_key,
        ..
    } = app.with_tenant("rotate.church").await;
    let me = app
        .graphql_with_key(
            "{ me { kind user { id } tenant { domain } } }",
            json!({}),
            &old_key,
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
        app.graphql_with_key("{ me { kind } }", json!({}), &old_key)
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.graphql_with_key("{ me { kind } }", json!({}), new_key)
            .await
            .data()["me"]["kind"],
        "API_KEY"
    );
    assert_eq!(
        app.graphql_with_key(
            "{ me { kind } }",
            json!({}),
            "tk_0000000000000000000000000000000000000000000000000000000000000000"
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
    app.with_tenant("one.church").await;
    let TestTenant {
        id: other_id,
        api_key: _,
        ..
    } = app.with_tenant("two.church").await;
    let token = app.tenant_token("one.church", "admin@one.church").await;
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
    let TestTenant {
        id,
        admin: token,
        api_key: key,
        ..
    } = app.with_tenant("reach.church").await;
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
            app.graphql_with_key(&query, json!({}), &key)
                .await
                .error_code(),
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
    app.with_tenant("throttle.church").await;
    for _ in 0..tenantgraph::auth::throttle::MAX_FAILURES_PER_ACCOUNT {
        let response = app
            .tenant_login("throttle.church", "admin@throttle.church", "wrong-password")
            .await;
        assert_eq!(response.error_code(), "UNAUTHENTICATED");
    }
    // Now even the right password waits.
    let limited = app
        .tenant_login("throttle.church", "admin@throttle.church", ADMIN_PASSWORD)
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
    no_tenant_search_path_outlives_a_request(&app).await;
}

/// After tenant requests, platform work and the pool's own statements see no tenant schema:
/// a statement that skips the pin fails instead of reaching any tenant's rows.
pub async fn no_tenant_search_path_outlives_a_request(app: &TestApp) {
    let operator = app.operator_token().await;
    app.with_tenant("pool.church").await;
    let token = app.tenant_token("pool.church", "admin@pool.church").await;

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

#[tokio::test]
async fn a_socket_opened_before_its_tenant_was_dropped_and_made_again_reaches_nothing_of_the_new_tenant()
 {
    let app = TestApp::spawn().await;
    let old = app.with_tenant("again.church").await;
    let (operator, old_id, old_key, old_token, old_schema) =
        (old.operator, old.id, old.api_key, old.admin, old.schema);
    let mut socket = app.websocket().await;
    assert_eq!(
        socket.init(Some(&old_token)).await.message()["type"],
        "connection_ack"
    );
    let held_context = tenantgraph::auth::tenant::from_api_key(&app.state, &old_key)
        .await
        .expect("the key's context");

    let deleted = app
        .graphql(
            "mutation($id: ID!, $confirm: String) { deleteTenant(id: $id, dropSchema: true, confirm: $confirm) { schemaDropped } }",
            json!({ "id": old_id, "confirm": "tenant_again_church" }),
            Some(&operator),
        )
        .await;
    assert_eq!(deleted.data()["deleteTenant"]["schemaDropped"], true);
    let new = app.with_tenant("again.church").await;
    assert_ne!(new.id, old_id);
    assert_eq!(
        new.schema, old_schema,
        "the new tenant has the old one's schema name"
    );
    let new_token = new.admin;
    app.graphql(
        "mutation { createPerson(input: { firstName: \"New\", lastName: \"Tenant\" }) { id } }",
        json!({}),
        Some(&new_token),
    )
    .await
    .data();

    // The old socket: its next operation (a write) is refused and the socket closed.
    socket
        .subscribe(
            "write",
            "mutation { createPerson(input: { firstName: \"Old\", lastName: \"Admin\" }) { id } }",
            json!({}),
        )
        .await;
    let code = loop {
        match socket.next_event().await {
            WsEvent::Message(message) => {
                assert!(message["payload"]["data"].is_null(), "{message}");
            }
            WsEvent::Closed(frame) => break frame.map(|(code, _)| code),
        }
    };
    assert_eq!(code, Some(4401));
    // A tenant context kept from before (as a socket, a DataLoader or a batch would) cannot pin
    // to the schema of the same name either: the pin itself asks the registry.
    let kept = held_context.begin(&app.state).await;
    assert!(
        matches!(kept, Err(AppError::Unauthenticated(_))),
        "a kept context reached the schema"
    );
    // The old token and key over HTTP too.
    for refused in [
        app.graphql(ME, json!({}), Some(&old_token)).await,
        app.graphql_with_key(ME, json!({}), &old_key).await,
    ] {
        assert_eq!(refused.error_code(), "UNAUTHENTICATED", "{}", refused.0);
    }
    // Nothing of the old admin landed in the new tenant.
    let people = app
        .graphql(
            "{ people(first: 10) { nodes { firstName } } }",
            json!({}),
            Some(&new_token),
        )
        .await;
    assert_eq!(
        people.data()["people"]["nodes"],
        json!([{ "firstName": "New" }])
    );
}

#[tokio::test]
async fn a_pin_the_registry_does_not_back_is_refused_and_leaves_its_connection_clean() {
    let app = TestApp::spawn_with(|env| {
        env.insert("DATABASE_MAX_CONNECTIONS".into(), "1".into());
    })
    .await;
    pin_refusals_leave_the_connection_clean(&app).await;
}

/// `BEGIN` and the pin travel as one statement, and a gated read is one statement: a pin or a
/// read for another tenant's id, a schema the tenant does not own, or a deactivated tenant is
/// refused, and the one pooled connection comes back usable (not stuck in an aborted
/// transaction) and without any schema of ours.
pub async fn pin_refusals_leave_the_connection_clean(app: &TestApp) {
    use entity::tenant::{user_statuses, users};
    use sea_orm::EntityTrait;
    use tenantgraph::{
        db::pinned::{begin_as_owner, read_as_owner},
        primitives::schema_name::SchemaName,
    };
    let a = app.with_tenant("pin-a.church").await;
    let b = app.with_tenant("pin-b.church").await;
    let id = |tenant: &TestTenant| tenant.id.parse::<uuid::Uuid>().unwrap();
    let schema = |tenant: &TestTenant| SchemaName::parse(&tenant.schema).unwrap();
    let count_users = Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM users");

    for (tenant_id, schema) in [
        (id(&a), schema(&b)),
        (id(&b), schema(&a)),
        (uuid::Uuid::new_v4(), schema(&a)),
    ] {
        for _ in 0..3 {
            let pinned = begin_as_owner(app.db(), tenant_id, &schema).await.unwrap();
            assert!(pinned.is_none(), "{tenant_id} pinned to {schema}");
            let read = read_as_owner(app.db(), tenant_id, &schema, users::Entity::find())
                .await
                .unwrap();
            assert!(read.is_none(), "{tenant_id} read {schema}: {read:?}");
        }
    }
    let read = read_as_owner(app.db(), id(&a), &schema(&a), users::Entity::find())
        .await
        .unwrap()
        .expect("the owner reads its table");
    assert_eq!(read.len(), 3);
    // Only the read's own table is qualified: a joined table resolves nowhere, so the read
    // fails rather than reaching another schema.
    let joined = read_as_owner(
        app.db(),
        id(&a),
        &schema(&a),
        users::Entity::find().inner_join(user_statuses::Entity),
    )
    .await;
    assert!(joined.is_err(), "a join read {joined:?}");
    let pinned = begin_as_owner(app.db(), id(&a), &schema(&a))
        .await
        .unwrap()
        .expect("the owner pins its schema");
    let users = pinned.query_one_raw(count_users.clone()).await.unwrap();
    assert_eq!(users.unwrap().try_get_by_index::<i64>(0).unwrap(), 3);
    drop(pinned);

    let deactivated = app
        .graphql(
            "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
            json!({ "id": a.id }),
            Some(&a.operator),
        )
        .await;
    assert_eq!(deactivated.data()["deactivateTenant"]["status"], "INACTIVE");
    let refused = begin_as_owner(app.db(), id(&a), &schema(&a)).await.unwrap();
    assert!(refused.is_none(), "a deactivated tenant pinned its schema");
    let refused = read_as_owner(app.db(), id(&a), &schema(&a), users::Entity::find())
        .await
        .unwrap();
    assert!(refused.is_none(), "a deactivated tenant read its schema");

    // The only connection, after every refusal: usable, and no tenant schema on its path.
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
    assert!(app.db().query_one_raw(count_users).await.is_err());
    let people = app
        .graphql("{ people { totalCount } }", json!({}), Some(&b.admin))
        .await;
    assert_eq!(people.data()["people"]["totalCount"], 0);
}

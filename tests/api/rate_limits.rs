//! Request rates: a tenant over its rate is refused with `RATE_LIMITED` while the others are
//! served; a tenant's own setting overrides the default at once; operators have a rate of their
//! own; refusals are counted per tenant in `/metrics`.

use serde_json::{Value, json};

use crate::helpers::{Gql, TestApp, WsEvent};
use crate::observability::metrics;

const PEOPLE: &str = "{ people(first: 1) { totalCount } }";
const UPDATE_TENANT: &str = "mutation($id: ID!, $input: UpdateTenantInput!) { updateTenant(id: $id, input: $input) { settings { limits { users requestsPerMinute } } } }";

fn assert_served(response: &Gql) {
    assert_eq!(response.data()["people"]["totalCount"], 0, "{}", response.0);
}

/// A `RATE_LIMITED` refusal that ran nothing; returns its `retryAfterSeconds`.
fn assert_rate_limited(response: &Value) -> u64 {
    let response = Gql(response.clone());
    assert_eq!(response.error_code(), "RATE_LIMITED", "{}", response.0);
    assert!(response.0["data"].is_null(), "{}", response.0);
    let retry = response.0["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("retryAfterSeconds in {}", response.0));
    assert!((1..=60).contains(&retry), "{}", response.0);
    retry
}

async fn set_rate(app: &TestApp, operator: &str, tenant: &str, per_minute: i64) {
    let input = json!({ "settings": { "limits": { "requestsPerMinute": per_minute } } });
    let updated = app
        .graphql(
            UPDATE_TENANT,
            json!({ "id": tenant, "input": input }),
            Some(operator),
        )
        .await;
    assert_eq!(
        updated.data()["updateTenant"]["settings"]["limits"]["requestsPerMinute"],
        per_minute,
        "{}",
        updated.0
    );
}

#[tokio::test]
async fn rate_a_tenant_over_its_rate_is_refused_while_another_tenant_is_served() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TENANT_RATE_LIMIT_PER_MINUTE".into(), "3".into());
    })
    .await;
    let operator = app.operator_token().await;
    let (busy, busy_key) = app.tenant_with_admin(&operator, "busy.example").await;
    let (_, quiet_key) = app.tenant_with_admin(&operator, "quiet.example").await;

    for _ in 0..3 {
        assert_served(&app.graphql_with_key(PEOPLE, json!({}), &busy_key).await);
    }
    let refused = app.graphql_with_key(PEOPLE, json!({}), &busy_key).await;
    // Three a minute: the next one fits in about 20 seconds.
    let retry = assert_rate_limited(&refused.0);
    assert!(retry > 10, "{}", refused.0);

    // The tenant's users count against the same rate as its key.
    let token = app.tenant_token("busy.example", "admin@busy.example").await;
    assert_rate_limited(&app.graphql(PEOPLE, json!({}), Some(&token)).await.0);

    // Another tenant is not affected.
    assert_served(&app.graphql_with_key(PEOPLE, json!({}), &quiet_key).await);

    // Each operation of a batch counts: four do not fit in the two the quiet tenant has left,
    // and none of them runs.
    let batch: Vec<_> = (0..4).map(|_| json!({ "query": PEOPLE })).collect();
    let answers: Value = app
        .http
        .post(app.url("/graphql"))
        .header("x-api-key", &quiet_key)
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for answer in answers.as_array().expect("one answer per operation") {
        assert_rate_limited(answer);
    }
    assert_served(&app.graphql_with_key(PEOPLE, json!({}), &quiet_key).await);

    // Refusals are counted per tenant: two of the busy tenant's, four of the quiet one's.
    let text = metrics(&app).await;
    assert!(
        text.contains(&format!(
            "tenantgraph_tenant_rate_limited_total{{tenant=\"{busy}\"}} 2"
        )),
        "{text}"
    );
    assert_eq!(
        app.state.metrics.tenant_rate_limited(busy.parse().unwrap()),
        2
    );
}

#[tokio::test]
async fn rate_a_tenants_own_setting_overrides_the_default_and_counts_from_the_next_request() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TENANT_RATE_LIMIT_PER_MINUTE".into(), "2".into());
    })
    .await;
    let operator = app.operator_token().await;
    let (tenant, key) = app.tenant_with_admin(&operator, "grown.example").await;
    for _ in 0..2 {
        assert_served(&app.graphql_with_key(PEOPLE, json!({}), &key).await);
    }
    assert_rate_limited(&app.graphql_with_key(PEOPLE, json!({}), &key).await.0);

    // A bigger plan: served again at once, no restart.
    set_rate(&app, &operator, &tenant, 100).await;
    for _ in 0..10 {
        assert_served(&app.graphql_with_key(PEOPLE, json!({}), &key).await);
    }
    let shown = app
        .graphql(
            "query($id: ID!) { tenant(id: $id) { settings { limits { requestsPerMinute } } } }",
            json!({ "id": tenant }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        shown.data()["tenant"]["settings"]["limits"]["requestsPerMinute"],
        100
    );

    // And a smaller one.
    set_rate(&app, &operator, &tenant, 1).await;
    assert_served(&app.graphql_with_key(PEOPLE, json!({}), &key).await);
    let retry = assert_rate_limited(&app.graphql_with_key(PEOPLE, json!({}), &key).await.0);
    assert!(retry > 30, "one a minute: the next fits in about a minute");

    // The rate is the operators' to set, not the tenant's own.
    let admin = app
        .tenant_token("grown.example", "admin@grown.example")
        .await;
    set_rate(&app, &operator, &tenant, 100).await;
    let raised = app
        .graphql(
            "mutation { updateTenantSettings(input: { limits: { requestsPerMinute: 100000 } }) { displayName } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(raised.error_code(), "BAD_USER_INPUT", "{}", raised.0);
    assert_eq!(
        raised.error_field(),
        Some("limits.requestsPerMinute"),
        "{}",
        raised.0
    );

    // Out of range is refused, naming the field.
    let bad = app
        .graphql(
            UPDATE_TENANT,
            json!({ "id": tenant, "input": { "settings": { "limits": { "requestsPerMinute": 0 } } } }),
            Some(&operator),
        )
        .await;
    assert_eq!(bad.error_code(), "BAD_USER_INPUT", "{}", bad.0);
    assert_eq!(
        bad.error_field(),
        Some("settings.limits.requestsPerMinute"),
        "{}",
        bad.0
    );
}

#[tokio::test]
async fn rate_operations_over_a_websocket_count_and_the_socket_stays_open() {
    let app = TestApp::spawn_with(|env| {
        env.insert("TENANT_RATE_LIMIT_PER_MINUTE".into(), "1".into());
    })
    .await;
    let operator = app.operator_token().await;
    let (_, key) = app.tenant_with_admin(&operator, "socket.example").await;
    let mut ws = app.websocket().await;
    ws.send(json!({ "type": "connection_init", "payload": { "X-API-Key": key } }))
        .await;
    assert_eq!(ws.next_event().await.message()["type"], "connection_ack");

    ws.subscribe("1", PEOPLE, json!({})).await;
    let first = ws.next_event().await.message();
    assert_eq!(first["type"], "next", "{first}");
    assert_eq!(first["payload"]["data"]["people"]["totalCount"], 0);
    assert_eq!(ws.next_event().await.message()["type"], "complete");

    ws.subscribe("2", PEOPLE, json!({})).await;
    let refused = ws.next_event().await.message();
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "2");
    let error = &refused["payload"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{refused}");
    assert!(error["extensions"]["retryAfterSeconds"].as_u64() >= Some(1));

    // The socket is still open: it answers a ping.
    ws.send(json!({ "type": "ping" })).await;
    match ws.next_event().await {
        WsEvent::Message(message) => assert_eq!(message["type"], "pong", "{message}"),
        closed => panic!("the socket closed: {closed:?}"),
    }
}

#[tokio::test]
async fn rate_platform_operators_have_a_rate_of_their_own() {
    let app = TestApp::spawn_with(|env| {
        env.insert("PLATFORM_RATE_LIMIT_PER_MINUTE".into(), "2".into());
    })
    .await;
    let operator = app.operator_token().await;
    let list = "{ tenants { totalCount } }";
    for _ in 0..2 {
        let listed = app.graphql(list, json!({}), Some(&operator)).await;
        assert_eq!(listed.data()["tenants"]["totalCount"], 0, "{}", listed.0);
    }
    assert_rate_limited(&app.graphql(list, json!({}), Some(&operator)).await.0);
    // Logins are anonymous: the throttle of logins applies to them, not a rate.
    app.operator_token().await;
    let text = metrics(&app).await;
    assert!(
        text.contains("tenantgraph_platform_rate_limited_total 1"),
        "{text}"
    );
}

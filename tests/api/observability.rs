//! Metrics, request ids and CORS.

use serde_json::json;

use crate::helpers::TestApp;

pub async fn metrics(app: &TestApp) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value on the exposition line that starts with `series ` (name and labels), if any.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a numeric sample"))
}

/// How many operations named `operation` ended with `outcome`, if any did.
fn requests_total(text: &str, operation: &str, outcome: &str) -> Option<f64> {
    sample(
        text,
        &format!(
            r#"tenantgraph_graphql_requests_total{{operation="{operation}",outcome="{outcome}"}}"#
        ),
    )
}

#[tokio::test]
async fn metrics_count_named_operations_by_outcome_with_a_duration_histogram() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    for _ in 0..3 {
        let response = app
            .post_json(
                json!({ "query": "query WhoAmI { me { kind } }", "operationName": "WhoAmI" }),
                Some(&token),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    // Anonymous, so `me` fails: counted under the error outcome.
    let failed = app
        .post_json(
            json!({ "query": "query WhoAmI { me { kind } }", "operationName": "WhoAmI" }),
            None,
        )
        .await;
    assert_eq!(failed.status(), 200);

    let text = metrics(&app).await;
    assert_eq!(requests_total(&text, "WhoAmI", "ok"), Some(3.0), "{text}");
    assert_eq!(
        requests_total(&text, "WhoAmI", "error"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"tenantgraph_graphql_request_duration_seconds_count{operation="WhoAmI"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"tenantgraph_graphql_request_duration_seconds_bucket{le="+Inf",operation="WhoAmI"}"#
        ),
        Some(4.0),
        "{text}"
    );
    let sum = sample(
        &text,
        r#"tenantgraph_graphql_request_duration_seconds_sum{operation="WhoAmI"}"#,
    )
    .expect("a duration sum for WhoAmI");
    assert!(sum > 0.0, "{text}");
    assert!(text.contains("# TYPE tenantgraph_graphql_requests counter"));
    assert!(text.contains("# TYPE tenantgraph_graphql_request_duration_seconds histogram"));
}

#[tokio::test]
async fn operations_without_a_usable_name_are_counted_as_anonymous() {
    let app = TestApp::spawn().await;
    app.graphql("{ __typename }", json!({}), None).await.data();
    let weird = "x".repeat(65);
    let response = app
        .post_json(
            json!({ "query": format!("query {weird} {{ __typename }}"), "operationName": weird }),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);

    let text = metrics(&app).await;
    assert_eq!(
        requests_total(&text, "anonymous", "ok"),
        Some(2.0),
        "{text}"
    );
    assert!(!text.contains(&weird));
}

#[tokio::test]
async fn every_response_carries_an_x_request_id_and_a_given_one_is_echoed() {
    let app = TestApp::spawn().await;
    let mut seen = Vec::new();
    for path in ["/health", "/health/db", "/metrics", "/nowhere"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id on {path}"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{path}: {id}");
        seen.push(id);
    }
    let graphql = app
        .post_json(json!({ "query": "{ __typename }" }), None)
        .await;
    seen.push(
        graphql.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned(),
    );
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "request ids are unique: {seen:?}");

    let response = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "client-chosen-id-42")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-id-42");
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_preflight_is_answered_for_the_allowed_origin_only() {
    let app = TestApp::spawn_with(|env| {
        env.insert(
            "CORS_ORIGINS".into(),
            "https://app.example.com, http://localhost:3000".into(),
        );
    })
    .await;

    let allowed = preflight(&app, "https://app.example.com").await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    let second = preflight(&app, "http://localhost:3000").await;
    assert_eq!(
        second.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );

    let refused = preflight(&app, "https://evil.example").await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        refused.headers()
    );

    // Simple requests: the allowed origin sees the header, another does not.
    let post = |origin: &'static str| {
        app.http
            .post(app.url("/graphql"))
            .header("origin", origin)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
    };
    let from_app = post("https://app.example.com").await.unwrap();
    assert_eq!(
        from_app.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let from_evil = post("https://evil.example").await.unwrap();
    assert!(
        from_evil
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn without_cors_origins_no_origin_is_allowed() {
    let app = TestApp::spawn().await;
    let response = preflight(&app, "https://app.example.com").await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none(),
        "{:?}",
        response.headers()
    );
}

#[tokio::test]
async fn operations_over_a_websocket_are_counted_like_those_over_http() {
    let app = TestApp::spawn().await;
    let mut socket = app.websocket().await;
    assert_eq!(socket.init(None).await.message()["type"], "connection_ack");
    // The same document twice (the second time from the document cache), then one that does
    // not validate: it never ran, so it is not counted.
    for (id, query) in [
        ("1", "query OverSocket { __typename }"),
        ("2", "query OverSocket { __typename }"),
        ("3", "query OverSocket { noSuchField }"),
    ] {
        socket.subscribe(id, query, json!({})).await;
        let first = socket.next_event().await.message();
        assert_eq!(first["id"], id, "{first}");
        if first["type"] == "next" {
            assert_eq!(first["payload"]["data"]["__typename"], "Query", "{first}");
            let complete = socket.next_event().await.message();
            assert_eq!(complete["type"], "complete", "{complete}");
        } else {
            assert_eq!(first["type"], "error", "{first}");
            assert_eq!(first["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
        }
    }

    let text = metrics(&app).await;
    assert_eq!(
        requests_total(&text, "OverSocket", "ok"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(requests_total(&text, "OverSocket", "error"), None, "{text}");
}

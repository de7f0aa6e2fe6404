//! Hostile requests: each is refused before any work is done for it, and the server is healthy
//! afterwards.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tenantgraph::graphql::{MAX_BATCH_OPERATIONS, MAX_COMPLEXITY, MAX_DEPTH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    Gql, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, assert_not_executed, count_statements,
};

const CONTRACT_CODES: [&str; 8] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "CONFLICT",
    "RATE_LIMITED",
    "TIMEOUT",
    "INTERNAL",
];

/// `/health` answers and an ordinary authenticated query works.
async fn assert_still_healthy(app: &TestApp) {
    let health = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let token = app.operator_token().await;
    let me = app
        .graphql("{ me { kind } }", json!({}), Some(&token))
        .await;
    assert_eq!(me.data()["me"]["kind"], "PLATFORM");
}

/// An introspection query `depth` fields deep: `__schema { types { fields { type { ofType ... name`.
fn introspection_query_of_depth(depth: usize) -> String {
    assert!(depth >= 5);
    let of_types = depth - 5;
    format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(of_types),
        "} ".repeat(of_types)
    )
}

/// `count` aliased fields, each costing one unit of complexity. (`__typename` costs nothing in
/// async-graphql's count, so `__schema { __typename }` it is.)
fn query_of_complexity(count: usize) -> String {
    let fields: String = (0..count)
        .map(|i| format!("a{i}: __schema {{ __typename }} "))
        .collect();
    format!("{{ {fields}}}")
}

#[tokio::test]
async fn a_query_deeper_than_the_depth_limit_is_refused_before_it_runs() {
    let app = TestApp::spawn_with(count_statements).await;

    let at_limit = app
        .graphql(&introspection_query_of_depth(MAX_DEPTH), json!({}), None)
        .await;
    assert!(
        at_limit.data()["__schema"]["types"].is_array(),
        "a query exactly at the limit runs"
    );
    assert!(
        at_limit.0["extensions"]["sqlStatements"].is_u64(),
        "executed operations report their statements: {}",
        at_limit.0
    );

    let too_deep = app
        .graphql(
            &introspection_query_of_depth(MAX_DEPTH + 1),
            json!({}),
            None,
        )
        .await;
    assert!(too_deep.0["data"].is_null(), "{}", too_deep.0);
    assert!(
        too_deep.error_message().contains("nested too deep"),
        "{}",
        too_deep.0
    );
    assert_not_executed(&too_deep);

    let far_too_deep = app
        .graphql(
            &introspection_query_of_depth(MAX_DEPTH * 20),
            json!({}),
            None,
        )
        .await;
    assert!(far_too_deep.0["data"].is_null(), "{}", far_too_deep.0);
    assert!(
        far_too_deep.0["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{}",
        far_too_deep.0
    );
    assert_not_executed(&far_too_deep);

    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn the_standard_introspection_query_of_graphiql_and_code_generators_is_answered() {
    let app = TestApp::spawn().await;
    let schema = app
        .graphql(
            include_str!("fixtures/introspection.graphql"),
            json!({}),
            None,
        )
        .await;
    assert_eq!(schema.data()["__schema"]["queryType"]["name"], "Query");
    assert!(
        schema.data()["__schema"]["types"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t["name"] == "Tenant")),
        "{}",
        schema.0
    );
}

#[tokio::test]
async fn a_query_over_the_complexity_limit_is_refused_before_it_runs() {
    let app = TestApp::spawn_with(count_statements).await;

    let within = app
        .graphql(&query_of_complexity(MAX_COMPLEXITY), json!({}), None)
        .await;
    assert_eq!(within.data()["a0"]["__typename"], "__Schema");
    assert_eq!(
        within.data()[format!("a{}", MAX_COMPLEXITY - 1)]["__typename"],
        "__Schema",
        "a query exactly at the limit runs"
    );

    let too_complex = app
        .graphql(&query_of_complexity(MAX_COMPLEXITY + 1), json!({}), None)
        .await;
    assert!(too_complex.0["data"].is_null(), "{}", too_complex.0);
    assert!(
        too_complex.error_message().contains("too complex"),
        "{}",
        too_complex.0
    );
    assert_not_executed(&too_complex);

    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn refused_documents_still_carry_a_contract_error_code() {
    let app = TestApp::spawn().await;
    for query in [
        introspection_query_of_depth(MAX_DEPTH + 1),
        query_of_complexity(MAX_COMPLEXITY + 1),
        "{ noSuchField }".to_owned(),
        "{ me { kind ".to_owned(),
    ] {
        let response = app.graphql(&query, json!({}), None).await;
        let code = response.0["errors"][0]["extensions"]["code"].as_str();
        assert!(
            code.is_some_and(|code| CONTRACT_CODES.contains(&code)),
            "error without a contract code for {:.60}: {}",
            query,
            response.0
        );
    }
}

#[tokio::test]
async fn an_empty_batch_or_an_empty_object_is_refused_with_400() {
    let app = TestApp::spawn().await;
    for body in ["[]", "{}"] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "for {body:?}");
        assert_eq!(
            Gql(response.json().await.unwrap()).error_code(),
            "BAD_USER_INPUT",
            "for {body:?}"
        );
    }
}

#[tokio::test]
async fn a_batch_of_more_than_ten_operations_is_refused_and_a_batch_of_ten_runs() {
    let app = TestApp::spawn().await;
    let operation = json!({ "query": "{ __typename }" });

    let eleven = vec![operation.clone(); MAX_BATCH_OPERATIONS + 1];
    let refused = app.post_json(Value::from(eleven), None).await;
    assert_eq!(refused.status(), 400);
    let body = Gql(refused.json().await.unwrap());
    assert_eq!(body.error_code(), "BAD_USER_INPUT");

    let ten = vec![operation; MAX_BATCH_OPERATIONS];
    let accepted = app.post_json(Value::from(ten), None).await;
    assert_eq!(accepted.status(), 200);
    let results: Vec<Value> = accepted.json().await.unwrap();
    assert_eq!(results.len(), MAX_BATCH_OPERATIONS);
    for result in &results {
        assert_eq!(Gql(result.clone()).data()["__typename"], "Query");
    }

    assert_still_healthy(&app).await;
}

const HUGE_BODY: usize = 50 * 1024 * 1024;

/// What came back for a raw request whose body was streamed to the server.
#[derive(Debug)]
struct RawOutcome {
    status: u16,
    /// Body bytes written when the response head arrived.
    sent_when_answered: usize,
}

/// Writes a `POST /graphql` with a `HUGE_BODY`-byte body over a plain TCP connection, with a
/// `Content-Length` or chunked, while reading the response. The body is written as fast as the
/// server takes it, so `sent_when_answered` shows whether the server read it all first.
async fn post_huge_body(app: &TestApp, chunked: bool) -> RawOutcome {
    let stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let framing = if chunked {
        "transfer-encoding: chunked".to_owned()
    } else {
        format!("content-length: {HUGE_BODY}")
    };
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n{framing}\r\n\r\n",
        app.address
    );
    let sent = Arc::new(AtomicUsize::new(0));
    let writing = {
        let sent = sent.clone();
        tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            let block = vec![b' '; 64 * 1024];
            while sent.load(Ordering::SeqCst) < HUGE_BODY {
                if chunked {
                    writer
                        .write_all(format!("{:x}\r\n", block.len()).as_bytes())
                        .await?;
                }
                writer.write_all(&block).await?;
                if chunked {
                    writer.write_all(b"\r\n").await?;
                }
                sent.fetch_add(block.len(), Ordering::SeqCst);
            }
            if chunked {
                writer.write_all(b"0\r\n\r\n").await?;
            }
            std::io::Result::Ok(())
        })
    };

    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    let sent_when_answered = sent.load(Ordering::SeqCst);
    writing.abort();
    assert!(read.is_ok(), "no response within 30 s");

    let head = String::from_utf8_lossy(&response);
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {head:?}"));
    RawOutcome {
        status,
        sent_when_answered,
    }
}

#[tokio::test]
async fn a_50_mb_body_with_a_content_length_is_refused_with_413_unread() {
    let app = TestApp::spawn().await;
    let outcome = post_huge_body(&app, false).await;
    assert_eq!(outcome.status, 413, "{outcome:?}");
    assert!(
        outcome.sent_when_answered < HUGE_BODY / 2,
        "the server read most of the body before answering: {outcome:?}"
    );
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn a_50_mb_chunked_body_without_a_content_length_is_refused_without_being_buffered() {
    let app = TestApp::spawn().await;
    let outcome = post_huge_body(&app, true).await;
    assert!(
        (400..500).contains(&outcome.status),
        "expected a 4xx: {outcome:?}"
    );
    assert_eq!(outcome.status, 413, "{outcome:?}");
    assert!(
        outcome.sent_when_answered < HUGE_BODY / 2,
        "the server read most of the body before answering: {outcome:?}"
    );
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_graphql_error_with_a_code() {
    let app = TestApp::spawn_with(|env| {
        env.insert("MAX_BODY_BYTES".into(), "1024".into());
    })
    .await;
    let padding = " ".repeat(2048);
    let response = app
        .post_json(
            json!({ "query": format!("{{ __typename }}{padding}") }),
            None,
        )
        .await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1024 bytes"),
        "{body}"
    );
}

/// A login mutation that would succeed (and hand out a token) if it ran.
fn login_mutation(name: &str) -> String {
    format!(
        r#"mutation {name} {{ login(input: {{email: "{OPERATOR_EMAIL}", password: "{OPERATOR_PASSWORD}"}}) {{ token }} }}"#
    )
}

async fn get_graphql(app: &TestApp, params: &[(&str, &str)]) -> (u16, Value) {
    let response = app
        .http
        .get(app.url("/graphql"))
        .query(params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_mutation_sent_with_get_is_refused_with_405_while_a_query_with_get_works() {
    let app = TestApp::spawn().await;

    let (status, body) = get_graphql(&app, &[("query", &login_mutation(""))]).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(Gql(body.clone()).error_code(), "BAD_USER_INPUT");
    assert!(body["data"].is_null(), "the mutation ran: {body}");

    // A mutation hidden in a document with a query never runs over GET, whichever way the
    // operation is selected.
    let document = format!("query Q {{ __typename }} {}", login_mutation("M"));
    for params in [
        vec![("query", document.as_str()), ("operationName", "M")],
        vec![("query", document.as_str()), ("operation_name", "M")],
        vec![("query", document.as_str())],
    ] {
        let (status, body) = get_graphql(&app, &params).await;
        assert!(body["data"].is_null(), "{params:?}: {status} {body}");
        assert!(
            body["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{params:?}: {status} {body}"
        );
    }
    let (status, _) = get_graphql(
        &app,
        &[("query", document.as_str()), ("operationName", "M")],
    )
    .await;
    assert_eq!(status, 405);

    let (status, body) = get_graphql(&app, &[("query", "{ __typename }")]).await;
    assert_eq!(status, 200);
    assert_eq!(Gql(body).data()["__typename"], "Query");
    let (status, body) = get_graphql(&app, &[("query", "query Q { __typename }")]).await;
    assert_eq!(status, 200);
    assert_eq!(Gql(body).data()["__typename"], "Query");
}

#[tokio::test]
async fn a_get_request_selects_the_operation_named_by_operation_name() {
    let app = TestApp::spawn().await;
    let document = format!("query Q {{ __typename }} {}", login_mutation("M"));
    let (status, body) = get_graphql(
        &app,
        &[("query", document.as_str()), ("operationName", "Q")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(Gql(body).data()["__typename"], "Query");

    let (status, body) = get_graphql(
        &app,
        &[("query", document.as_str()), ("operationName", "M")],
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(Gql(body).error_code(), "BAD_USER_INPUT");
}

#[tokio::test]
async fn with_introspection_off_the_schema_is_hidden_and_no_field_is_suggested() {
    let app = TestApp::spawn_with(|env| {
        env.insert("GRAPHQL_INTROSPECTION".into(), "false".into());
    })
    .await;
    // async-graphql answers `__schema: null` (without an error): nothing of the schema leaks.
    let schema = app
        .graphql("{ __schema { types { name } } }", json!({}), None)
        .await;
    assert!(schema.0["data"]["__schema"].is_null(), "{}", schema.0);
    assert!(!schema.0.to_string().contains("Viewer"), "{}", schema.0);
    let type_query = app
        .graphql(
            "{ __type(name: \"Query\") { fields { name } } }",
            json!({}),
            None,
        )
        .await;
    assert!(type_query.0["data"]["__type"].is_null(), "{}", type_query.0);

    let misspelled = app.graphql("{ me { kindd } }", json!({}), None).await;
    assert!(
        misspelled.error_message().contains("kindd"),
        "{}",
        misspelled.0
    );
    assert!(
        !misspelled.0.to_string().contains("Did you mean"),
        "{}",
        misspelled.0
    );
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn by_default_introspection_answers_and_misspellings_get_suggestions() {
    let app = TestApp::spawn().await;
    let schema = app
        .graphql("{ __schema { types { name } } }", json!({}), None)
        .await;
    let types = schema.data()["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Query"));

    let misspelled = app.graphql("{ me { kindd } }", json!({}), None).await;
    assert!(
        misspelled.error_message().contains("Did you mean \"kind\""),
        "{}",
        misspelled.0
    );
}

#[tokio::test]
async fn a_password_longer_than_1024_bytes_at_login_is_bad_user_input() {
    let app = TestApp::spawn().await;
    let response = app.login(OPERATOR_EMAIL, &"p".repeat(1025)).await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    assert_eq!(response.error_field(), Some("password"));

    // Multi-byte characters count in bytes: 342 × 3 = 1026 bytes.
    let response = app.login(OPERATOR_EMAIL, &"€".repeat(342)).await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");

    // Exactly 1024 bytes is merely wrong.
    let response = app.login(OPERATOR_EMAIL, &"p".repeat(1024)).await;
    assert_eq!(response.error_code(), "UNAUTHENTICATED");
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let app = TestApp::spawn().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .http
            .post(app.url("/graphql"))
            .body(r#"{"query":"{ __typename }"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "for {content_type:?}");
        assert_eq!(
            Gql(response.json().await.unwrap()).error_code(),
            "BAD_USER_INPUT"
        );
    }
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn invalid_json_is_refused_with_400() {
    let app = TestApp::spawn().await;
    for body in [
        r#"{"query": "{ __typename }""#,
        "not json",
        "",
        "42",
        "null",
        r#"{"query": 42}"#,
    ] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "for {body:?}");
        assert_eq!(
            Gql(response.json().await.unwrap()).error_code(),
            "BAD_USER_INPUT",
            "for {body:?}"
        );
    }
    assert_still_healthy(&app).await;
}

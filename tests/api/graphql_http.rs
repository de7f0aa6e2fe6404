//! GraphQL over HTTP as the GraphQL-over-HTTP specification has it: the response media type
//! negotiated from `Accept`, status codes by media type, request errors without `data`, and
//! batches. The same cases as the `graphql-http` audit (`tests/conformance`), readable without
//! node.

use reqwest::{Method, header};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// What came back: status, the media type (without parameters) and the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    media_type: String,
    content_type: String,
    headers: header::HeaderMap,
    body: Value,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("HTTP {status} {content_type}: not JSON: {text:?}"));
        Answer {
            status,
            media_type,
            content_type,
            headers,
            body,
        }
    }

    /// `extensions.code` of every error.
    fn codes(&self) -> Vec<&str> {
        self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors in {self:?}"))
            .iter()
            .map(|error| error["extensions"]["code"].as_str().unwrap_or("(none)"))
            .collect()
    }

    fn has_data_entry(&self) -> bool {
        self.body.get("data").is_some()
    }
}

async fn post(app: &TestApp, accept: Option<&str>, body: Value) -> Answer {
    post_with(app, accept, &[], body).await
}

async fn post_with(
    app: &TestApp,
    accept: Option<&str>,
    headers: &[(&str, &str)],
    body: Value,
) -> Answer {
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Answer::from(request.send().await.unwrap()).await
}

async fn get(app: &TestApp, accept: Option<&str>, params: &[(&str, &str)]) -> Answer {
    let mut request = app.http.get(app.url("/graphql")).query(params);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    Answer::from(request.send().await.unwrap()).await
}

#[tokio::test]
async fn the_response_media_type_is_negotiated_from_accept() {
    let app = TestApp::spawn().await;
    for (accept, expected) in [
        (None, JSON),
        (Some("*/*"), JSON),
        (Some("application/*"), JSON),
        (Some("application/json"), JSON),
        (Some("application/json; charset=utf-8"), JSON),
        (Some(GRAPHQL_RESPONSE), GRAPHQL_RESPONSE),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GRAPHQL_RESPONSE,
        ),
        (
            Some("application/json, application/graphql-response+json"),
            GRAPHQL_RESPONSE,
        ),
        (
            Some("application/graphql-response+json;q=0.5, application/json"),
            JSON,
        ),
        (
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            JSON,
        ),
    ] {
        let answer = post(&app, accept, json!({ "query": "{ __typename }" })).await;
        assert_eq!(answer.status, 200, "{accept:?}: {answer:?}");
        assert_eq!(answer.media_type, expected, "{accept:?}: {answer:?}");
        assert!(
            answer.content_type.contains("charset=utf-8"),
            "{accept:?}: {answer:?}"
        );
        assert_eq!(answer.body, json!({ "data": { "__typename": "Query" } }));
        assert_eq!(answer.headers[header::VARY], "accept");

        let answer = get(&app, accept, &[("query", "{ __typename }")]).await;
        assert_eq!(answer.status, 200, "GET {accept:?}: {answer:?}");
        assert_eq!(answer.media_type, expected, "GET {accept:?}: {answer:?}");
    }
}

#[tokio::test]
async fn an_accept_header_without_a_supported_type_is_406() {
    let app = TestApp::spawn().await;
    for accept in [
        "text/plain",
        "text/html, image/*",
        "application/json;q=0",
        "application/xml",
    ] {
        let answer = post(&app, Some(accept), json!({ "query": "{ __typename }" })).await;
        assert_eq!(answer.status, 406, "{accept}: {answer:?}");
        assert_eq!(answer.media_type, JSON, "{accept}: {answer:?}");
        assert_eq!(answer.codes(), ["BAD_USER_INPUT"], "{accept}");
        assert!(!answer.has_data_entry(), "{answer:?}");

        let answer = get(&app, Some(accept), &[("query", "{ __typename }")]).await;
        assert_eq!(answer.status, 406, "GET {accept}: {answer:?}");
    }
}

/// A document that does not parse, one that does not validate, variables that do not coerce.
fn request_errors() -> [Value; 3] {
    [
        json!({ "query": "{" }),
        json!({ "query": "{ noSuchField }" }),
        json!({ "query": "query Q($id: ID!) { __typename }", "variables": { "id": null } }),
    ]
}

#[tokio::test]
async fn request_errors_are_400_without_data_under_graphql_response_json() {
    let app = TestApp::spawn().await;
    for body in request_errors() {
        let answer = post(&app, Some(GRAPHQL_RESPONSE), body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {answer:?}");
        assert_eq!(answer.media_type, GRAPHQL_RESPONSE, "{body}");
        assert!(!answer.has_data_entry(), "{body}: {answer:?}");
        assert_eq!(answer.codes(), ["BAD_USER_INPUT"], "{body}");
    }
    // The same over GET.
    let answer = get(
        &app,
        Some(GRAPHQL_RESPONSE),
        &[("query", "{ noSuchField }")],
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(!answer.has_data_entry(), "{answer:?}");
    assert_eq!(answer.codes(), ["BAD_USER_INPUT"]);
}

#[tokio::test]
async fn request_errors_are_200_without_data_under_json() {
    let app = TestApp::spawn().await;
    for accept in [None, Some(JSON)] {
        for body in request_errors() {
            let answer = post(&app, accept, body.clone()).await;
            assert_eq!(answer.status, 200, "{accept:?} {body}: {answer:?}");
            assert_eq!(answer.media_type, JSON, "{body}");
            assert!(!answer.has_data_entry(), "{body}: {answer:?}");
            assert_eq!(answer.codes(), ["BAD_USER_INPUT"], "{body}");
        }
    }
}

#[tokio::test]
async fn field_errors_are_200_with_their_data_under_either_media_type() {
    let app = TestApp::spawn().await;
    for accept in [GRAPHQL_RESPONSE, JSON] {
        // `me` is non-null: its error makes `data` null, but the operation ran.
        let answer = post(&app, Some(accept), json!({ "query": "{ me { kind } }" })).await;
        assert_eq!(answer.status, 200, "{accept}: {answer:?}");
        assert_eq!(answer.media_type, accept);
        assert!(answer.has_data_entry(), "{answer:?}");
        assert!(answer.body["data"].is_null(), "{answer:?}");
        assert_eq!(answer.codes(), ["UNAUTHENTICATED"]);
        assert_eq!(answer.body["errors"][0]["path"], json!(["me"]));

        // `tenant` is nullable: partial data beside the error.
        let answer = post(
            &app,
            Some(accept),
            json!({ "query": "{ __typename tenant(domain: \"x.example\") { id } }" }),
        )
        .await;
        assert_eq!(answer.status, 200, "{accept}: {answer:?}");
        assert_eq!(answer.body["data"]["__typename"], "Query", "{answer:?}");
        assert_eq!(answer.codes(), ["UNAUTHENTICATED"]);
    }
}

#[tokio::test]
async fn a_refused_token_is_401_under_graphql_response_json_and_200_under_json() {
    let app = TestApp::spawn().await;
    let bad_token = [("authorization", "Bearer not-a-token")];
    let query = json!({ "query": "{ __typename }" });

    let answer = post_with(&app, Some(GRAPHQL_RESPONSE), &bad_token, query.clone()).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.media_type, GRAPHQL_RESPONSE);
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert!(!answer.has_data_entry(), "{answer:?}");
    assert_eq!(answer.codes(), ["UNAUTHENTICATED"]);

    let answer = post_with(&app, Some(JSON), &bad_token, query).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.media_type, JSON);
    assert!(!answer.has_data_entry(), "{answer:?}");
    assert_eq!(answer.codes(), ["UNAUTHENTICATED"]);
}

#[tokio::test]
async fn a_post_body_must_be_json_in_utf8() {
    let app = TestApp::spawn().await;
    for (content_type, status) in [
        ("application/json; charset=utf-8", 200),
        ("application/json;charset=UTF-8", 200),
        ("application/json; charset=iso-8859-1", 415),
        ("application/graphql", 415),
        ("text/plain", 415),
    ] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, GRAPHQL_RESPONSE)
            .body(r#"{"query":"{ __typename }"}"#)
            .send()
            .await
            .unwrap();
        let answer = Answer::from(response).await;
        assert_eq!(answer.status, status, "{content_type}: {answer:?}");
        assert_eq!(answer.media_type, GRAPHQL_RESPONSE);
        if status != 200 {
            assert_eq!(answer.codes(), ["BAD_USER_INPUT"]);
            assert!(!answer.has_data_entry(), "{answer:?}");
        }
    }
}

#[tokio::test]
async fn malformed_requests_are_400_under_either_media_type() {
    let app = TestApp::spawn().await;
    for accept in [GRAPHQL_RESPONSE, JSON] {
        for body in [
            r#"{ "not a JSON"#,
            r#"{"notquery": "{ __typename }"}"#,
            r#"{"query": 0}"#,
            r#"{"query": "{ __typename }", "variables": "string"}"#,
            r#"{"query": "{ __typename }", "operationName": false}"#,
            r#"{"query": "{ __typename }", "extensions": ["array"]}"#,
        ] {
            let response = app
                .http
                .post(app.url("/graphql"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, accept)
                .body(body)
                .send()
                .await
                .unwrap();
            let answer = Answer::from(response).await;
            assert_eq!(answer.status, 400, "{accept} {body}: {answer:?}");
            assert_eq!(answer.media_type, accept);
            assert_eq!(answer.codes(), ["BAD_USER_INPUT"]);
        }
        for params in [
            vec![],
            vec![("query", "")],
            vec![("query", "{ __typename }"), ("variables", "[1]")],
            vec![("query", "{ __typename }"), ("variables", "{not json")],
            vec![("query", "{ __typename }"), ("extensions", "42")],
        ] {
            let answer = get(&app, Some(accept), &params).await;
            assert_eq!(answer.status, 400, "{accept} GET {params:?}: {answer:?}");
            assert_eq!(answer.codes(), ["BAD_USER_INPUT"]);
        }
    }
    // Null parameters and map extensions are fine.
    let answer = post(
        &app,
        Some(GRAPHQL_RESPONSE),
        json!({ "query": "{ __typename }", "variables": null, "operationName": null,
                "extensions": { "some": "value" } }),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = get(
        &app,
        Some(GRAPHQL_RESPONSE),
        &[
            (
                "query",
                "query Type($name: String!) { __type(name: $name) { name } }",
            ),
            ("variables", r#"{"name": "Query"}"#),
            ("extensions", r#"{"some": "value"}"#),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["data"]["__type"]["name"], "Query");
}

#[tokio::test]
async fn a_mutation_over_get_is_405_allowing_post() {
    let app = TestApp::spawn().await;
    for accept in [GRAPHQL_RESPONSE, JSON] {
        let answer = get(&app, Some(accept), &[("query", "mutation { __typename }")]).await;
        assert_eq!(answer.status, 405, "{answer:?}");
        assert_eq!(answer.media_type, accept);
        assert_eq!(answer.headers[header::ALLOW], "POST");
        assert_eq!(answer.codes(), ["BAD_USER_INPUT"]);
        assert!(!answer.has_data_entry(), "{answer:?}");
    }
    // Other methods: axum's own 405, naming the methods the route has.
    let response = app
        .http
        .request(Method::PUT, app.url("/graphql"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(
        response.headers()[header::ALLOW]
            .to_str()
            .unwrap()
            .contains("POST")
    );
}

#[tokio::test]
async fn a_batch_is_answered_as_json_with_one_result_per_operation() {
    let app = TestApp::spawn().await;
    let batch = json!([
        { "query": "{ __typename }" },
        { "query": "{" },
        { "query": "{ me { kind } }" },
    ]);
    for accept in [
        None,
        Some("*/*"),
        Some("application/graphql-response+json, application/json;q=0.9"),
    ] {
        let answer = post(&app, accept, batch.clone()).await;
        assert_eq!(answer.status, 200, "{accept:?}: {answer:?}");
        assert_eq!(answer.media_type, JSON, "{accept:?}");
        let results = answer.body.as_array().expect("an array of results");
        assert_eq!(results.len(), 3);
        assert_eq!(results[0], json!({ "data": { "__typename": "Query" } }));
        // A request error: no data entry.
        assert!(results[1].get("data").is_none(), "{}", results[1]);
        assert_eq!(
            results[1]["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
        // A field error: data null beside the error.
        assert!(results[2].get("data").is_some_and(Value::is_null));
        assert_eq!(
            results[2]["errors"][0]["extensions"]["code"],
            "UNAUTHENTICATED"
        );
    }

    // A client that takes only graphql-response+json cannot receive an array of responses.
    let answer = post(&app, Some(GRAPHQL_RESPONSE), batch.clone()).await;
    assert_eq!(answer.status, 406, "{answer:?}");
    assert_eq!(answer.codes(), ["BAD_USER_INPUT"]);

    // A refused token refuses every operation of the batch, each in its place.
    let answer = post_with(
        &app,
        None,
        &[("authorization", "Bearer not-a-token")],
        batch,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let results = answer.body.as_array().expect("an array of results");
    assert_eq!(results.len(), 3);
    for result in results {
        assert!(result.get("data").is_none(), "{result}");
        assert_eq!(result["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text))
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

#[tokio::test]
async fn a_persisted_query_is_registered_by_its_text_once_then_sent_by_its_hash_alone() {
    let app = TestApp::spawn().await;
    let query = "query Apq { __typename }";
    let hash = sha256_hex(query);

    // An unknown hash: the client is told to send the text.
    let unknown = post(&app, None, json!({ "extensions": persisted(&hash) })).await;
    assert_eq!(unknown.status, 200);
    assert!(unknown.body.get("data").is_none(), "{:?}", unknown.body);
    assert_eq!(
        unknown.body["errors"][0]["message"],
        "PersistedQueryNotFound"
    );
    assert_eq!(
        unknown.body["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );

    // The text with its hash runs and registers it; then the hash alone is enough.
    let registered = post(
        &app,
        None,
        json!({ "query": query, "extensions": persisted(&hash) }),
    )
    .await;
    assert_eq!(
        registered.body,
        json!({ "data": { "__typename": "Query" } })
    );
    for _ in 0..2 {
        let by_hash = post(&app, None, json!({ "extensions": persisted(&hash) })).await;
        assert_eq!(by_hash.body, json!({ "data": { "__typename": "Query" } }));
    }
    // Over GET too, as Apollo's clients send persisted queries.
    let extensions = persisted(&hash).to_string();
    let by_get = get(&app, None, &[("extensions", extensions.as_str())]).await;
    assert_eq!(by_get.body, json!({ "data": { "__typename": "Query" } }));

    // A persisted mutation does not run by GET.
    let mutation = "mutation { logout }";
    let mutation_hash = sha256_hex(mutation);
    post(
        &app,
        None,
        json!({ "query": mutation, "extensions": persisted(&mutation_hash) }),
    )
    .await;
    let extensions = persisted(&mutation_hash).to_string();
    let mutation_by_get = get(&app, None, &[("extensions", extensions.as_str())]).await;
    assert!(
        mutation_by_get.body.get("data").is_none(),
        "{:?}",
        mutation_by_get.body
    );
    assert_eq!(
        mutation_by_get.body["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );

    // A hash that is not the text's is refused and registers nothing under it.
    let other = sha256_hex("{ me { kind } }");
    let mismatched = post(
        &app,
        Some(GRAPHQL_RESPONSE),
        json!({ "query": query, "extensions": persisted(&other) }),
    )
    .await;
    assert_eq!(mismatched.status, 400);
    assert_eq!(
        mismatched.body["errors"][0]["message"],
        "provided sha does not match query"
    );
    let still_unknown = post(&app, None, json!({ "extensions": persisted(&other) })).await;
    assert_eq!(
        still_unknown.body["errors"][0]["message"],
        "PersistedQueryNotFound"
    );

    // Malformed persisted-query extensions are request errors with a contract code.
    for extensions in [
        json!({ "persistedQuery": { "version": 2, "sha256Hash": hash } }),
        json!({ "persistedQuery": { "version": 1, "sha256Hash": "not hex" } }),
        json!({ "persistedQuery": "yes" }),
    ] {
        let refused = post(&app, None, json!({ "extensions": extensions })).await;
        assert!(refused.body.get("data").is_none(), "{:?}", refused.body);
        assert_eq!(
            refused.body["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
    }
}

#[tokio::test]
async fn a_repeated_document_answers_as_the_first_time_whatever_its_operation_and_variables() {
    let app = TestApp::spawn().await;
    let operations = "query A { __typename } query B { __schema { queryType { name } } }";
    let with_variables = "query($n: Int!) { tenants(first: $n) { totalCount } }";
    let operator = app.operator_token().await;
    let bearer = format!("Bearer {operator}");
    let as_operator = [("authorization", bearer.as_str())];
    for _ in 0..3 {
        let a = post(
            &app,
            None,
            json!({ "query": operations, "operationName": "A" }),
        )
        .await;
        assert_eq!(a.body, json!({ "data": { "__typename": "Query" } }));
        let b = post(
            &app,
            None,
            json!({ "query": operations, "operationName": "B" }),
        )
        .await;
        assert_eq!(b.body["data"]["__schema"]["queryType"]["name"], "Query");
        // An operation the document lacks, or none named, never starts passing.
        for name in [json!("C"), Value::Null] {
            let refused = post(
                &app,
                None,
                json!({ "query": operations, "operationName": name }),
            )
            .await;
            assert!(refused.body.get("data").is_none(), "{:?}", refused.body);
        }
        // Variables are checked every time: missing, then present.
        let missing = post_with(&app, None, &as_operator, json!({ "query": with_variables })).await;
        assert!(missing.body.get("data").is_none(), "{:?}", missing.body);
        let given = post_with(
            &app,
            None,
            &as_operator,
            json!({ "query": with_variables, "variables": { "n": 5 } }),
        )
        .await;
        assert_eq!(
            given.body["data"]["tenants"]["totalCount"], 0,
            "{:?}",
            given.body
        );
        // A document that does not validate stays refused.
        let invalid = post(&app, None, json!({ "query": "{ nope }" })).await;
        assert_eq!(
            invalid.body["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
    }
}

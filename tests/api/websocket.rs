//! GraphQL over WebSocket at `/graphql/ws`: `graphql-transport-ws`, the legacy `graphql-ws`,
//! and the guards of a long-lived socket.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantgraph::http::ws::{
    CONNECTION_INIT_TIMEOUT, MAX_MESSAGE_BYTES, MAX_OPERATIONS_PER_SOCKET,
};
use tokio_tungstenite::tungstenite;

use crate::helpers::{JWT_SECRET, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, WsClient, WsEvent};

fn ws_url(app: &TestApp) -> String {
    format!("ws://{}/graphql/ws", app.address)
}

/// Reads messages until `complete` for `id`, returning the `next` payloads seen for it.
async fn payloads_until_complete(socket: &mut WsClient, id: &str) -> Vec<Value> {
    let mut payloads = Vec::new();
    loop {
        let message = socket.next_event().await.message();
        if message["id"] != id {
            panic!("unexpected message while waiting for {id}: {message}");
        }
        match message["type"].as_str() {
            Some("next") => payloads.push(message["payload"].clone()),
            Some("complete") => return payloads,
            _ => panic!("unexpected message for {id}: {message}"),
        }
    }
}

/// A socket initialised without a token (anonymous), its `connection_ack` read.
async fn anonymous_socket(app: &TestApp) -> WsClient {
    let mut socket = app.websocket().await;
    assert_eq!(socket.init(None).await.message()["type"], "connection_ack");
    socket
}

/// Runs `{ __typename }` as operation `id` and expects its one result, then `complete`: the
/// socket is in order.
async fn assert_answers(socket: &mut WsClient, id: &str) {
    socket.subscribe(id, "{ __typename }", json!({})).await;
    let payloads = payloads_until_complete(socket, id).await;
    assert_eq!(payloads, [json!({ "data": { "__typename": "Query" } })]);
}

#[tokio::test]
async fn an_operator_runs_a_query_over_graphql_transport_ws() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut socket = app.websocket().await;

    let ack = socket.init(Some(&token)).await.message();
    assert_eq!(ack["type"], "connection_ack", "{ack}");

    socket.subscribe("1", "{ me { kind } }", json!({})).await;
    let next = socket.next_event().await.message();
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "1");
    assert_eq!(next["payload"]["data"]["me"]["kind"], "PLATFORM", "{next}");
    let complete = socket.next_event().await.message();
    assert_eq!(complete, json!({ "type": "complete", "id": "1" }));

    // The socket stays usable for further operations.
    assert_answers(&mut socket, "2").await;
}

#[tokio::test]
async fn a_socket_initialised_without_a_token_is_anonymous() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;
    socket.subscribe("1", "{ me { kind } }", json!({})).await;
    let payloads = payloads_until_complete(&mut socket, "1").await;
    assert_eq!(payloads.len(), 1);
    assert_eq!(
        payloads[0]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{}",
        payloads[0]
    );
}

#[tokio::test]
async fn connection_init_with_a_bad_token_gets_no_ack_and_the_socket_is_closed() {
    let app = TestApp::spawn().await;
    for token in ["not-a-jwt", "a.b.c"] {
        let mut socket = app.websocket().await;
        match socket.init(Some(token)).await {
            WsEvent::Closed(_) => {}
            WsEvent::Message(message) => panic!("expected the socket closed, got {message}"),
        }
    }
    // A malformed Authorization value (no Bearer scheme) is refused the same way.
    let token = app.operator_token().await;
    let mut socket = app.websocket().await;
    socket
        .send(json!({ "type": "connection_init", "payload": { "Authorization": token } }))
        .await;
    assert!(matches!(socket.next_event().await, WsEvent::Closed(_)));
}

#[tokio::test]
async fn connection_init_with_a_bad_token_closes_the_socket_with_4403() {
    let app = TestApp::spawn().await;
    let mut socket = app.websocket().await;
    match socket.init(Some("not-a-jwt")).await {
        WsEvent::Closed(Some((code, _))) => assert_eq!(code, 4403),
        other => panic!("expected a close frame with 4403, got {other:?}"),
    }
}

#[tokio::test]
async fn a_socket_without_connection_init_is_closed_with_4408_after_the_timeout() {
    let app = TestApp::spawn().await;
    let mut silent = app.websocket().await;
    // Opened at the same time and initialised at once: it must outlive the deadline.
    let mut talking = anonymous_socket(&app).await;

    let opened = Instant::now();
    match silent.next_event().await {
        WsEvent::Closed(Some((code, _))) => assert_eq!(code, 4408),
        other => panic!("expected a close frame with 4408, got {other:?}"),
    }
    let waited = opened.elapsed();
    assert!(
        waited >= CONNECTION_INIT_TIMEOUT - Duration::from_secs(1),
        "closed after only {waited:?}"
    );

    assert_answers(&mut talking, "1").await;
}

#[tokio::test]
async fn an_operation_beyond_the_per_socket_limit_gets_an_error_message() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;

    // Logins take an argon2 verification each (a couple at a time), so the first operations are
    // still running when the one over the limit is read. (Correct credentials, so that no
    // failed-login throttling can make them finish early.)
    let login = format!(
        r#"mutation {{ login(input: {{ email: "{OPERATOR_EMAIL}", password: "{OPERATOR_PASSWORD}" }}) {{ token }} }}"#
    );
    // All in one write, so they arrive together, before any of them can finish.
    socket
        .send_together((0..=MAX_OPERATIONS_PER_SOCKET).map(|i| {
            json!({ "id": format!("op{i}"), "type": "subscribe", "payload": { "query": login } })
        }))
        .await;
    let extra = format!("op{MAX_OPERATIONS_PER_SOCKET}");

    let mut refused = None;
    let mut completed = Vec::new();
    while completed.len() < MAX_OPERATIONS_PER_SOCKET || refused.is_none() {
        let message = socket.next_event().await.message();
        let id = message["id"].as_str().unwrap_or_default().to_owned();
        match message["type"].as_str() {
            Some("error") => {
                assert_eq!(id, extra, "only the extra operation is refused: {message}");
                refused = Some(message);
            }
            Some("next") => {
                assert_ne!(id, extra, "the extra operation ran: {message}");
            }
            Some("complete") => {
                assert_ne!(id, extra, "the extra operation ran: {message}");
                completed.push(id);
            }
            _ => panic!("unexpected message {message}"),
        }
    }
    let refused = refused.unwrap();
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    completed.sort();
    completed.dedup();
    assert_eq!(completed.len(), MAX_OPERATIONS_PER_SOCKET);

    // Once the others have finished there is room again, even for the refused id.
    assert_answers(&mut socket, &extra).await;
}

#[tokio::test]
async fn a_message_larger_than_the_limit_closes_the_socket() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;

    let padding = " ".repeat(MAX_MESSAGE_BYTES + 1024);
    socket
        .send(json!({
            "id": "big",
            "type": "subscribe",
            "payload": { "query": format!("{{ __typename {padding}}}") },
        }))
        .await;
    match socket.next_event().await {
        WsEvent::Closed(Some((code, _))) => assert_eq!(code, 1009, "Message Too Big"),
        other => panic!("expected the socket closed with 1009, got {other:?}"),
    }

    // Just under the limit is fine, on a new socket.
    let mut socket = anonymous_socket(&app).await;
    let padding = " ".repeat(MAX_MESSAGE_BYTES - 1024);
    socket
        .subscribe("ok", &format!("{{ __typename {padding}}}"), json!({}))
        .await;
    let payloads = payloads_until_complete(&mut socket, "ok").await;
    assert_eq!(payloads, [json!({ "data": { "__typename": "Query" } })]);
}

#[tokio::test]
async fn with_cors_origins_a_websocket_from_another_origin_is_refused_at_the_handshake() {
    let app = TestApp::spawn_with(|env| {
        env.insert("CORS_ORIGINS".into(), "https://app.example.com".into());
    })
    .await;

    match WsClient::try_connect(&ws_url(&app), Some("https://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        Err(other) => panic!("expected HTTP 403 at the handshake, got {other}"),
        Ok(_) => panic!("a socket from https://evil.example was accepted"),
    }

    let mut allowed = WsClient::try_connect(&ws_url(&app), Some("https://app.example.com"))
        .await
        .expect("the allowed origin opens a socket");
    assert_eq!(allowed.init(None).await.message()["type"], "connection_ack");

    // Clients that are not browsers send no Origin and are let through.
    let mut headless = WsClient::try_connect(&ws_url(&app), None)
        .await
        .expect("a socket without Origin opens");
    assert_eq!(
        headless.init(None).await.message()["type"],
        "connection_ack"
    );
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_answers_a_query() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut socket = WsClient::try_connect_with_protocol(&ws_url(&app), None, "graphql-ws")
        .await
        .expect("a legacy socket opens");

    socket
        .send(json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {token}") },
        }))
        .await;
    assert_eq!(legacy_next(&mut socket).await["type"], "connection_ack");

    socket
        .send(json!({
            "id": "1",
            "type": "start",
            "payload": { "query": "{ me { kind } }" },
        }))
        .await;
    let data = legacy_next(&mut socket).await;
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["id"], "1");
    assert_eq!(data["payload"]["data"]["me"]["kind"], "PLATFORM", "{data}");
    let complete = legacy_next(&mut socket).await;
    assert_eq!(complete["type"], "complete", "{complete}");
    assert_eq!(complete["id"], "1");
}

/// The next legacy-protocol message, skipping keep-alives.
async fn legacy_next(socket: &mut WsClient) -> Value {
    loop {
        let message = socket.next_event().await.message();
        if message["type"] != "ka" {
            return message;
        }
    }
}

/// Reads until the socket closes, returning its close code.
async fn close_code(socket: &mut WsClient) -> Option<u16> {
    loop {
        match socket.next_event().await {
            WsEvent::Message(_) => continue,
            WsEvent::Closed(frame) => return frame.map(|(code, _)| code),
        }
    }
}

#[tokio::test]
async fn every_operation_on_a_socket_is_authorised_anew_and_a_refusal_closes_it_with_4401() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("recheck.church").await;
    let mut socket = app.websocket().await;
    assert_eq!(
        socket.init(Some(&tenant.admin)).await.message()["type"],
        "connection_ack"
    );
    const PEOPLE: &str = "{ people(first: 5) { nodes { firstName } } }";
    socket.subscribe("1", PEOPLE, json!({})).await;
    let payloads = payloads_until_complete(&mut socket, "1").await;
    assert_eq!(payloads[0]["data"]["people"]["nodes"], json!([]));

    app.graphql(
        "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
        json!({ "id": tenant.id }),
        Some(&tenant.operator),
    )
    .await
    .data();

    socket.subscribe("2", PEOPLE, json!({})).await;
    let mut refused = None;
    let code = loop {
        match socket.next_event().await {
            WsEvent::Message(message) => {
                assert!(
                    message["payload"]["data"].is_null(),
                    "the operation ran: {message}"
                );
                if message["type"] == "next" {
                    refused = Some(message);
                }
            }
            WsEvent::Closed(frame) => break frame.map(|(code, _)| code),
        }
    };
    assert_eq!(code, Some(4401), "closed after {refused:?}");
    // The refusal itself may or may not get out before the close frame.
    if let Some(message) = refused.filter(|message| message["type"] == "next") {
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_socket_is_closed_with_4401_when_its_token_expires() {
    use tenantgraph::auth::jwt::{JwtKeys, TokenKind};

    let app = TestApp::spawn().await;
    // A token of the operator's real session that ends in two seconds.
    let session = app.state.jwt.verify(&app.operator_token().await).unwrap();
    let short = JwtKeys::new(&JWT_SECRET.to_owned().into(), Duration::from_secs(2))
        .issue(TokenKind::Platform, session.sub, session.sid, None)
        .unwrap();
    let mut socket = app.websocket().await;
    assert_eq!(
        socket.init(Some(&short.token)).await.message()["type"],
        "connection_ack"
    );
    socket.subscribe("1", "{ me { kind } }", json!({})).await;
    let payloads = payloads_until_complete(&mut socket, "1").await;
    assert_eq!(payloads[0]["data"]["me"]["kind"], "PLATFORM");
    // Nothing more is sent: the server closes the socket when the token's time is up.
    assert_eq!(close_code(&mut socket).await, Some(4401));
}

/// Expects the socket closed with `code`.
async fn expect_close(socket: &mut WsClient, code: u16) -> String {
    match socket.next_event().await {
        WsEvent::Closed(Some((closed, reason))) if closed == code => reason,
        other => panic!("expected a close frame with {code}, got {other:?}"),
    }
}

fn login_document() -> String {
    format!(
        r#"mutation {{ login(input: {{ email: "{OPERATOR_EMAIL}", password: "{OPERATOR_PASSWORD}" }}) {{ token }} }}"#
    )
}

#[tokio::test]
async fn a_document_that_does_not_parse_or_validate_is_an_error_message_without_complete() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;

    for (id, query, variables) in [
        ("parse", "{", json!({})),
        ("validate", "{ noSuchField }", json!({})),
        (
            "coerce",
            "query Q($id: ID!) { __typename }",
            json!({ "id": null }),
        ),
    ] {
        socket.subscribe(id, query, variables).await;
        let error = socket.next_event().await.message();
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["id"], id);
        assert_eq!(
            error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{error}"
        );
    }
    // No `complete` follows an `error`, and an id is free again once its operation ended.
    assert_answers(&mut socket, "parse").await;
}

#[tokio::test]
async fn a_field_error_is_next_with_its_path_then_complete() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;
    socket.subscribe("1", "{ me { kind } }", json!({})).await;
    let payloads = payloads_until_complete(&mut socket, "1").await;
    assert_eq!(payloads.len(), 1);
    assert!(payloads[0]["data"].is_null());
    assert_eq!(payloads[0]["errors"][0]["path"], json!(["me"]));
}

#[tokio::test]
async fn an_id_still_in_use_closes_the_socket_with_4409() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;
    // A login verifies a password hash: still running when the second message is read.
    socket
        .send_together([
            json!({ "id": "twin", "type": "subscribe", "payload": { "query": login_document() } }),
            json!({ "id": "twin", "type": "subscribe", "payload": { "query": "{ __typename }" } }),
        ])
        .await;
    let reason = expect_close(&mut socket, 4409).await;
    assert_eq!(reason, "Subscriber for twin already exists");
}

#[tokio::test]
async fn an_operation_before_connection_init_closes_the_socket_with_4401() {
    let app = TestApp::spawn().await;
    let mut socket = app.websocket().await;
    socket.subscribe("1", "{ __typename }", json!({})).await;
    expect_close(&mut socket, 4401).await;

    // Binary frames pass the same guard.
    let mut socket = app.websocket().await;
    let subscribe =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } });
    socket
        .send_frame(tungstenite::Message::Binary(
            subscribe.to_string().into_bytes().into(),
        ))
        .await;
    expect_close(&mut socket, 4401).await;
}

#[tokio::test]
async fn an_invalid_message_closes_the_socket_with_4400() {
    let app = TestApp::spawn().await;
    for invalid in [
        tungstenite::Message::Text("not json".into()),
        tungstenite::Message::Binary(vec![0xff, 0xfe].into()),
        tungstenite::Message::Text(json!({ "type": "nonsense" }).to_string().into()),
        tungstenite::Message::Text(json!({ "id": "1" }).to_string().into()),
        tungstenite::Message::Text(
            json!({ "type": "subscribe", "payload": { "query": "{ __typename }" } })
                .to_string()
                .into(),
        ),
        tungstenite::Message::Text(
            json!({ "type": "subscribe", "id": "1", "payload": { "query": 42 } })
                .to_string()
                .into(),
        ),
        tungstenite::Message::Text(
            json!({ "type": "subscribe", "id": "1", "payload": { "query": "{ __typename }", "variables": [1] } })
                .to_string()
                .into(),
        ),
        // The legacy protocol's message types are not part of this one.
        tungstenite::Message::Text(
            json!({ "type": "start", "id": "1", "payload": { "query": "{ __typename }" } })
                .to_string()
                .into(),
        ),
        tungstenite::Message::Text(
            json!({ "type": "ping", "payload": "text" }).to_string().into(),
        ),
    ] {
        let mut socket = anonymous_socket(&app).await;
        socket.send_frame(invalid.clone()).await;
        let reason = expect_close(&mut socket, 4400).await;
        assert!(reason.starts_with("Invalid message received"), "{reason}");
    }
}

#[tokio::test]
async fn a_second_connection_init_closes_the_socket_with_4429() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;
    socket
        .send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    expect_close(&mut socket, 4429).await;
}

#[tokio::test]
async fn ping_is_answered_with_pong_before_and_after_connection_init() {
    let app = TestApp::spawn().await;
    let mut socket = app.websocket().await;
    socket.send(json!({ "type": "ping" })).await;
    assert_eq!(
        socket.next_event().await.message(),
        json!({ "type": "pong" })
    );
    assert_eq!(socket.init(None).await.message()["type"], "connection_ack");
    socket
        .send(json!({ "type": "ping", "payload": { "at": 1 } }))
        .await;
    assert_eq!(socket.next_event().await.message()["type"], "pong");
    // An unsolicited pong is fine.
    socket.send(json!({ "type": "pong" })).await;
    assert_answers(&mut socket, "1").await;
}

#[tokio::test]
async fn an_operation_the_client_completed_sends_nothing_more() {
    let app = TestApp::spawn().await;
    let mut socket = anonymous_socket(&app).await;
    // Started and completed by the client in one write: no `next`, and no `complete` answering
    // the client's own.
    socket
        .send_together([
            json!({ "id": "slow", "type": "subscribe", "payload": { "query": login_document() } }),
            json!({ "id": "slow", "type": "complete" }),
        ])
        .await;
    assert_answers(&mut socket, "after").await;

    // The id is free again at once.
    assert_answers(&mut socket, "slow").await;
}

#[tokio::test]
async fn an_idle_socket_is_closed_with_4401_as_soon_as_its_session_ends() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("idle.church").await;
    let mut socket = app.websocket().await;
    assert_eq!(
        socket.init(Some(&tenant.admin)).await.message()["type"],
        "connection_ack"
    );
    // The session ends over HTTP; the socket starts nothing and is closed all the same.
    let logout = app
        .graphql("mutation { logout }", json!({}), Some(&tenant.admin))
        .await;
    assert_eq!(logout.data()["logout"], true);
    assert_eq!(close_code(&mut socket).await, Some(4401));

    // Another user's socket in the same tenant stays open.
    let mut other = app.websocket().await;
    assert_eq!(
        other.init(Some(&tenant.member)).await.message()["type"],
        "connection_ack"
    );
    other.subscribe("1", "{ me { kind } }", json!({})).await;
    let payloads = payloads_until_complete(&mut other, "1").await;
    assert_eq!(payloads[0]["data"]["me"]["kind"], "TENANT_USER");
}

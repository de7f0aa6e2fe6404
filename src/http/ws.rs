//! GraphQL over WebSocket (`graphql-transport-ws` and the legacy `graphql-ws`), with the guards a
//! long-lived socket needs: an `Origin` allow-list, a deadline for `connection_init`, the token
//! checked there, a cap on concurrent operations, and a frame size limit.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::http::WebSocketProtocols;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::{
        ConnectInfo, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_channel::mpsc;
use futures_util::{SinkExt, StreamExt, future};
use serde_json::{Value, json};

use crate::{
    auth::{self, RequestContext},
    http::HttpState,
};

/// Time a client has to send `connection_init` after the socket opens.
pub const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Operations one socket may run at once.
pub const MAX_OPERATIONS_PER_SOCKET: usize = 20;
/// Largest WebSocket message accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

pub async fn upgrade(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    protocol: GraphQLProtocol,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&http.state.config.cors_origins, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let client =
        super::client_addr::client_addr(&http.state.config.trusted_proxies, peer.ip(), &headers);
    // The same choice async-graphql makes: the new protocol when the client offers it.
    let refusal_format = if headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|offered| offered.contains("graphql-transport-ws"))
    {
        WebSocketProtocols::GraphQLWS
    } else {
        WebSocketProtocols::SubscriptionsTransportWS
    };
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(http, socket, protocol, refusal_format, client))
        .into_response()
}

/// Browsers always send `Origin`; a socket opened from a page of another site is refused when
/// an allow-list is configured. Clients that are not browsers send none and are let through.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN).map(|origin| origin.to_str()) {
        None => true,
        Some(Ok(origin)) => allowed
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(origin.trim_end_matches('/'))),
        Some(Err(_)) => false,
    }
}

/// What the socket's guard knows about the conversation so far.
#[derive(Default)]
struct SocketTracker {
    initialised: bool,
    active: HashSet<String>,
}

#[tracing::instrument(
    name = "websocket",
    skip_all,
    fields(tenant_id = tracing::field::Empty, schema = tracing::field::Empty)
)]
async fn serve(
    http: HttpState,
    socket: WebSocket,
    protocol: GraphQLProtocol,
    refusal_format: WebSocketProtocols,
    client: IpAddr,
) {
    let (mut socket_sink, socket_stream) = socket.split();
    let (outgoing, mut outgoing_rx) = mpsc::channel::<Message>(64);
    let tracker = Arc::new(Mutex::new(SocketTracker::default()));

    // Client messages pass through the guard before async-graphql sees them.
    let inbound = {
        let tracker = tracker.clone();
        let mut refusals = outgoing.clone();
        socket_stream.filter(move |message| {
            let verdict = match message {
                Ok(Message::Text(text)) => admit(&tracker, refusal_format, text.as_str()),
                _ => Admission::Pass,
            };
            let pass = match verdict {
                Admission::Pass => true,
                Admission::Refuse(reply) => {
                    // A full channel means the client is not reading; dropping the refusal is fine.
                    let _ = refusals.try_send(Message::Text(reply.to_string().into()));
                    false
                }
            };
            future::ready(pass)
        })
    };

    let state = http.state.clone();
    let span = tracing::Span::current();
    let graphql =
        GraphQLWebSocket::new_with_pair(outgoing.clone(), inbound, http.schema.clone(), protocol)
            .on_connection_init(move |payload| async move {
                let credentials =
                    credentials_from_init_payload(&payload).map_err(async_graphql::Error::from)?;
                let principal = auth::authenticate(&state, credentials)
                    .await
                    .map_err(async_graphql::Error::from)?;
                principal.record_tenant(&span);
                Ok(crate::graphql::operation_data(RequestContext {
                    principal,
                    client_addr: Some(client),
                }))
            })
            .serve();

    // Server messages go out through one writer, which also notices finished operations.
    let writer = {
        let tracker = tracker.clone();
        async move {
            let mut acknowledged = false;
            while let Some(mut message) = outgoing_rx.next().await {
                match &mut message {
                    Message::Text(text) => {
                        acknowledged |= text.as_str().contains("\"connection_ack\"");
                        forget_finished(&tracker, text.as_str());
                    }
                    // A refused `connection_init` is 4403 Forbidden in graphql-transport-ws;
                    // async-graphql closes such sockets with a generic 1002.
                    Message::Close(Some(frame)) if !acknowledged && frame.code == 1002 => {
                        frame.code = 4403;
                    }
                    _ => {}
                }
                let closing = matches!(message, Message::Close(_));
                if socket_sink.send(message).await.is_err() || closing {
                    break;
                }
            }
        }
    };

    let init_deadline = {
        let tracker = tracker.clone();
        let mut outgoing = outgoing;
        async move {
            tokio::time::sleep(CONNECTION_INIT_TIMEOUT).await;
            if tracker.lock().expect("socket tracker poisoned").initialised {
                return future::pending::<()>().await;
            }
            let _ = outgoing
                .send(Message::Close(Some(CloseFrame {
                    code: 4408,
                    reason: "Connection initialisation timeout".into(),
                })))
                .await;
        }
    };

    // When the conversation ends, every sender is dropped and the writer drains what is left
    // (such as a close frame with its reason) before the socket goes.
    let conversation = async {
        tokio::select! {
            _ = graphql => {}
            _ = init_deadline => {}
        }
    };
    tokio::join!(conversation, writer);
}

enum Admission {
    Pass,
    Refuse(Value),
}

/// Lets a client message through, or answers it with an error when the socket already runs
/// as many operations as it may.
fn admit(tracker: &Mutex<SocketTracker>, protocol: WebSocketProtocols, text: &str) -> Admission {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return Admission::Pass; // async-graphql closes the socket on malformed messages
    };
    let id = message.get("id").and_then(Value::as_str);
    let mut tracker = tracker.lock().expect("socket tracker poisoned");
    match (message.get("type").and_then(Value::as_str), id) {
        (Some("connection_init"), _) => tracker.initialised = true,
        (Some("subscribe" | "start"), Some(id)) => {
            if !tracker.active.contains(id) && tracker.active.len() >= MAX_OPERATIONS_PER_SOCKET {
                let error = json!({
                    "message": format!(
                        "at most {MAX_OPERATIONS_PER_SOCKET} operations may run on one socket"
                    ),
                    "extensions": { "code": "RATE_LIMITED" },
                });
                let payload = match protocol {
                    WebSocketProtocols::GraphQLWS => json!([error]),
                    WebSocketProtocols::SubscriptionsTransportWS => error,
                };
                return Admission::Refuse(json!({ "id": id, "type": "error", "payload": payload }));
            }
            tracker.active.insert(id.to_owned());
        }
        (Some("complete" | "stop"), Some(id)) => {
            tracker.active.remove(id);
        }
        _ => {}
    }
    Admission::Pass
}

/// Frees an operation's slot when the server reports it finished.
fn forget_finished(tracker: &Mutex<SocketTracker>, text: &str) {
    if !(text.contains("\"complete\"") || text.contains("\"error\"")) {
        return;
    }
    if let Ok(message) = serde_json::from_str::<Value>(text)
        && matches!(
            message.get("type").and_then(Value::as_str),
            Some("complete" | "error")
        )
        && let Some(id) = message.get("id").and_then(Value::as_str)
    {
        tracker
            .lock()
            .expect("socket tracker poisoned")
            .active
            .remove(id);
    }
}

/// Credentials from the `connection_init` payload: `{"Authorization": "Bearer <jwt>"}` or
/// `{"X-API-Key": "tk_..."}` (any key case).
fn credentials_from_init_payload(
    payload: &Value,
) -> crate::error::AppResult<auth::Credentials<'_>> {
    let Some(object) = payload.as_object() else {
        return Ok(auth::Credentials::default());
    };
    let field = |name: &str| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let bearer = match field("authorization") {
        None => None,
        Some(value) => Some(auth::parse_bearer(value)?),
    };
    let api_key = match field(auth::API_KEY_HEADER) {
        None => None,
        Some(value) => Some(
            value
                .ok_or_else(|| crate::error::AppError::Unauthenticated("invalid API key".into()))?,
        ),
    };
    Ok(auth::Credentials { bearer, api_key })
}

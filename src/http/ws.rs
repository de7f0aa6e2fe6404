//! GraphQL over WebSocket (`graphql-transport-ws` and the legacy `graphql-ws`), with the guards a
//! long-lived socket needs: an `Origin` allow-list, a deadline for `connection_init`, the token
//! checked there, a cap on concurrent operations, and a frame size limit.
//!
//! async-graphql speaks both protocols; a guard on each side of it holds `graphql-transport-ws`
//! to the letter where async-graphql does not: 4400 for an invalid message, 4401 for an operation
//! before `connection_init`, 4403 for a refused `connection_init`, 4408 when none comes in time,
//! 4409 for an id still in use, an `error` message (without `complete`) for a document that does
//! not parse or validate, and nothing more for an operation the client completed.

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
use futures_util::{SinkExt, StreamExt, future, stream};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast::error::RecvError};

use crate::{
    auth::{self, Principal, StoredCredentials},
    graphql::reauthorize::SocketCredentials,
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
    let kind = if headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|offered| offered.contains("graphql-transport-ws"))
    {
        WebSocketProtocols::GraphQLWS
    } else {
        WebSocketProtocols::SubscriptionsTransportWS
    };
    let user_agent = super::user_agent(&headers);
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(http, socket, protocol, kind, client, user_agent))
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
    /// `connection_init` was refused (async-graphql then closes with a generic 1002).
    init_refused: bool,
    /// The guard closed the socket: nothing more from the client is read.
    closing: bool,
    /// Operations the client may consider running.
    active: HashSet<String>,
    /// Operations over for the client whose `complete` async-graphql still sends (after an
    /// `error`, or in answer to the client's own `complete`): it is not passed on.
    silenced: HashSet<String>,
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
    kind: WebSocketProtocols,
    client: IpAddr,
    user_agent: Option<String>,
) {
    let (mut socket_sink, socket_stream) = socket.split();
    let (outgoing, mut outgoing_rx) = mpsc::channel::<Message>(64);
    let tracker = Arc::new(Mutex::new(SocketTracker::default()));
    let closed = Arc::new(Notify::new());

    // Client messages pass through the guard before async-graphql sees them.
    let inbound = {
        let tracker = tracker.clone();
        let mut refusals = outgoing.clone();
        socket_stream.filter(move |message| {
            let verdict = match message {
                Ok(Message::Text(text)) => admit(&tracker, kind, text.as_str()),
                Ok(Message::Binary(bytes)) => match std::str::from_utf8(bytes) {
                    Ok(text) => admit(&tracker, kind, text),
                    Err(_) => refuse_invalid(&tracker, kind, "a binary message".into()),
                },
                Err(err) if is_over_size(err) => Admission::Close(
                    1009,
                    format!("a message is at most {MAX_MESSAGE_BYTES} bytes"),
                ),
                _ => Admission::Pass,
            };
            let pass = match verdict {
                Admission::Pass => true,
                Admission::Drop => false,
                Admission::Reply(reply) => {
                    // A full channel means the client is not reading; dropping the reply is fine.
                    let _ = refusals.try_send(Message::Text(reply.to_string().into()));
                    false
                }
                Admission::Close(code, reason) => {
                    let _ = refusals.try_send(close_frame(code, reason));
                    false
                }
            };
            future::ready(pass)
        })
    };

    // What async-graphql sends is put right in the order it is produced, before anything else
    // is read: the guard's view of which operations run stays exact.
    let replies = {
        let tracker = tracker.clone();
        outgoing
            .clone()
            .with_flat_map(move |message| stream::iter(outbound(&tracker, kind, message).map(Ok)))
    };

    // Set when the socket's authorisation ends: its token expires (the time is sent) or an
    // operation finds its credentials no longer hold (`Ended`).
    let (end_tx, mut end_rx) = tokio::sync::watch::channel(SocketEnd::Open);
    let state = http.state.clone();
    let span = tracing::Span::current();
    let init_tracker = tracker.clone();
    // Operations run with the request-level steps of every transport (see `AppSchema`).
    let graphql = GraphQLWebSocket::new_with_pair(replies, inbound, http.schema.clone(), protocol)
        .on_connection_init(move |payload| async move {
            let authenticated = match credentials_from_init_payload(&payload) {
                Ok(credentials) => auth::authenticate(&state, credentials)
                    .await
                    .map(|principal| (credentials, principal)),
                Err(err) => Err(err),
            };
            match authenticated {
                Ok((credentials, principal)) => {
                    principal.record_tenant(&span);
                    let stored = StoredCredentials::from(credentials);
                    end_tx.send_replace(SocketEnd::Watching {
                        expires_at: credentials
                            .bearer
                            .and_then(|token| state.jwt.verify(token).ok())
                            .map(|claims| claims.exp),
                        principal: Box::new(principal.clone()),
                        stored: stored.clone(),
                    });
                    // Operations are authorised one by one from these (see `graphql::reauthorize`).
                    let mut data = async_graphql::Data::default();
                    data.insert(SocketCredentials {
                        stored,
                        client_addr: client,
                        user_agent,
                        on_refused: Arc::new(move || {
                            end_tx.send_replace(SocketEnd::Ended);
                        }),
                    });
                    Ok(data)
                }
                Err(err) => {
                    lock(&init_tracker).init_refused = true;
                    Err(err.into())
                }
            }
        })
        .serve();

    // Server messages go out through one writer; a close frame ends the conversation.
    let writer = {
        let closed = closed.clone();
        async move {
            while let Some(message) = outgoing_rx.next().await {
                let closing = matches!(message, Message::Close(_));
                if socket_sink.send(message).await.is_err() || closing {
                    break;
                }
            }
            closed.notify_one();
        }
    };

    let init_deadline = {
        let tracker = tracker.clone();
        let mut outgoing = outgoing.clone();
        async move {
            tokio::time::sleep(CONNECTION_INIT_TIMEOUT).await;
            if lock(&tracker).initialised {
                return future::pending::<()>().await;
            }
            let _ = outgoing
                .send(close_frame(
                    4408,
                    "Connection initialisation timeout".into(),
                ))
                .await;
        }
    };

    // A socket whose authorisation ended is closed with 4401, ending what runs on it: when its
    // token expires, when an operation is refused, or, without waiting for one, when a change to
    // its session, user, key or tenant is announced and the credentials no longer hold.
    let authorisation_ended = {
        let mut outgoing = outgoing;
        let state = http.state.clone();
        let mut access = http.state.access.subscribe();
        async move {
            let reason = loop {
                let end = end_rx.borrow_and_update().clone();
                let (expires_at, principal, stored) = match end {
                    SocketEnd::Open => (None, None, None),
                    SocketEnd::Ended => break "Unauthorized: the credentials no longer hold",
                    SocketEnd::Watching {
                        expires_at,
                        principal,
                        stored,
                    } => (expires_at, Some(principal), Some(stored)),
                };
                let expiry = async move {
                    match expires_at {
                        Some(exp) => {
                            let left = exp - chrono::Utc::now().timestamp();
                            let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
                            tokio::time::sleep(left).await;
                        }
                        None => future::pending().await,
                    }
                };
                tokio::select! {
                    () = expiry => break "Unauthorized: the token expired",
                    changed = end_rx.changed() => {
                        if changed.is_err() {
                            // The socket's data is gone: nothing can end it any more.
                            future::pending::<()>().await;
                        }
                    }
                    event = access.recv() => {
                        let affected = match (&event, &principal) {
                            (Ok(event), Some(principal)) => principal.is_affected_by(event),
                            (Err(RecvError::Lagged(_)), Some(_)) => true,
                            (Err(RecvError::Closed), _) => future::pending().await,
                            (_, None) => false,
                        };
                        if affected
                            && let Some(stored) = &stored
                            && auth::reauthenticate(&state, stored).await.is_err()
                        {
                            break "Unauthorized: the credentials no longer hold";
                        }
                    }
                }
            };
            let _ = outgoing.send(close_frame(4401, reason.into())).await;
        }
    };

    // When the conversation ends, every sender is dropped and the writer drains what is left
    // (such as a close frame with its reason) before the socket goes.
    let conversation = async {
        tokio::select! {
            _ = graphql => {}
            _ = init_deadline => {}
            _ = authorisation_ended => {}
            _ = closed.notified() => {}
        }
    };
    tokio::join!(conversation, writer);
}

/// Where the socket's authorisation stands.
#[derive(Clone)]
enum SocketEnd {
    /// Before `connection_init`.
    Open,
    /// Authorised as `principal` from `stored`, until `expires_at` (the token's `exp`).
    Watching {
        expires_at: Option<i64>,
        principal: Box<Principal>,
        stored: StoredCredentials,
    },
    /// An operation found the credentials no longer hold.
    Ended,
}

fn lock(tracker: &Mutex<SocketTracker>) -> std::sync::MutexGuard<'_, SocketTracker> {
    tracker.lock().expect("socket tracker poisoned")
}

/// The WebSocket layer's refusal of a message or frame over [`MAX_MESSAGE_BYTES`]; its error
/// type is not public, so it is known by its text ("Space limit exceeded: Message too long").
fn is_over_size(err: &axum::Error) -> bool {
    let text = err.to_string();
    text.contains("Message too long") || text.contains("Frame too long")
}

fn close_frame(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

enum Admission {
    /// async-graphql handles it.
    Pass,
    /// Nobody does (the socket is closing).
    Drop,
    /// The guard answers it with this message.
    Reply(Value),
    /// The guard closes the socket with this code and reason.
    Close(u16, String),
}

/// Closes a `graphql-transport-ws` socket with 4400 for a message the protocol does not know;
/// the legacy protocol leaves such messages to async-graphql.
fn refuse_invalid(
    tracker: &Mutex<SocketTracker>,
    protocol: WebSocketProtocols,
    what: String,
) -> Admission {
    match protocol {
        WebSocketProtocols::GraphQLWS => {
            lock(tracker).closing = true;
            Admission::Close(4400, format!("Invalid message received: {what}"))
        }
        WebSocketProtocols::SubscriptionsTransportWS => Admission::Pass,
    }
}

/// Lets a client message through, answers it (an operation over the per-socket limit), or
/// closes the socket as `graphql-transport-ws` requires: 4400 for an invalid message, 4401 for
/// an operation before `connection_init`, 4409 for an id still in use.
fn admit(tracker: &Mutex<SocketTracker>, protocol: WebSocketProtocols, text: &str) -> Admission {
    if lock(tracker).closing {
        return Admission::Drop;
    }
    let message = match serde_json::from_str::<Value>(text) {
        Ok(message) => message,
        Err(_) => return refuse_invalid(tracker, protocol, "not JSON".into()),
    };
    if protocol == WebSocketProtocols::GraphQLWS
        && let Err(fault) = check_transport_message(&message)
    {
        return refuse_invalid(tracker, protocol, fault);
    }
    let id = message.get("id").and_then(Value::as_str);
    let mut tracker = lock(tracker);
    match (message.get("type").and_then(Value::as_str), id) {
        (Some("connection_init"), _) => tracker.initialised = true,
        (Some("subscribe" | "start"), Some(id)) => {
            let transport = protocol == WebSocketProtocols::GraphQLWS;
            if transport && !tracker.initialised {
                tracker.closing = true;
                return Admission::Close(4401, "Unauthorized".into());
            }
            if transport && tracker.active.contains(id) {
                tracker.closing = true;
                return Admission::Close(4409, format!("Subscriber for {id} already exists"));
            }
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
                return Admission::Reply(json!({ "id": id, "type": "error", "payload": payload }));
            }
            tracker.active.insert(id.to_owned());
            // Were a finished operation of this id still to end inside async-graphql, it is
            // replaced now: its `complete` never comes.
            tracker.silenced.remove(id);
        }
        (Some("complete" | "stop"), Some(id)) => {
            // async-graphql answers the `complete` of a running operation with one of its own,
            // which the client must not receive.
            let was_running = tracker.active.remove(id);
            if was_running && protocol == WebSocketProtocols::GraphQLWS {
                tracker.silenced.insert(id.to_owned());
            }
        }
        _ => {}
    }
    Admission::Pass
}

/// The message shapes `graphql-transport-ws` allows a client to send; `Err` says what is wrong.
fn check_transport_message(message: &Value) -> Result<(), String> {
    let object_or_null =
        |value: Option<&Value>| value.is_none_or(|value| value.is_null() || value.is_object());
    let Some(object) = message.as_object() else {
        return Err("not an object".into());
    };
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
    let id_ok = object
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty());
    match kind {
        "connection_init" | "ping" | "pong" if object_or_null(object.get("payload")) => Ok(()),
        "connection_init" | "ping" | "pong" => {
            Err(format!("{kind} with a payload that is not an object"))
        }
        "complete" if id_ok => Ok(()),
        "subscribe" if !id_ok => Err("subscribe without an id".into()),
        "subscribe" => {
            let payload = object.get("payload");
            let field = |name: &str| payload.and_then(|payload| payload.get(name));
            let valid = payload.is_some_and(Value::is_object)
                && field("query").is_some_and(Value::is_string)
                && object_or_null(field("variables"))
                && object_or_null(field("extensions"))
                && field("operationName").is_none_or(|name| name.is_null() || name.is_string());
            if valid {
                Ok(())
            } else {
                Err("subscribe without a valid payload".into())
            }
        }
        "" => Err("no type".into()),
        other => Err(format!("unexpected type {other:?}")),
    }
}

/// Puts right what async-graphql sends: in `graphql-transport-ws`, a request error (nothing
/// executed) is an `error` message ending the operation, not `next` then `complete`; a refused
/// `connection_init` closes with 4403 and a malformed message with 4400 (async-graphql: 1002).
/// Also frees the slot of every operation that ends. `None`: the message is not sent.
fn outbound(
    tracker: &Mutex<SocketTracker>,
    protocol: WebSocketProtocols,
    message: Message,
) -> Option<Message> {
    let transport = protocol == WebSocketProtocols::GraphQLWS;
    match message {
        Message::Text(text) if may_matter(text.as_str()) => {
            let Ok(parsed) = serde_json::from_str::<Value>(text.as_str()) else {
                return Some(Message::Text(text));
            };
            let id = parsed.get("id").and_then(Value::as_str).unwrap_or_default();
            let mut tracker = lock(tracker);
            match parsed.get("type").and_then(Value::as_str) {
                Some("complete") => {
                    if tracker.silenced.remove(id) {
                        return None;
                    }
                    tracker.active.remove(id);
                }
                Some("error") => {
                    tracker.active.remove(id);
                }
                Some("next") if transport && is_request_error(&parsed["payload"]) => {
                    tracker.active.remove(id);
                    tracker.silenced.insert(id.to_owned());
                    let errors = parsed["payload"]["errors"].clone();
                    let error = json!({ "id": id, "type": "error", "payload": errors });
                    return Some(Message::Text(error.to_string().into()));
                }
                _ => {}
            }
            Some(Message::Text(text))
        }
        Message::Close(Some(mut frame)) if transport && frame.code == 1002 => {
            frame.code = if lock(tracker).init_refused {
                4403
            } else {
                4400
            };
            Some(Message::Close(Some(frame)))
        }
        other => Some(other),
    }
}

/// Whether a server message may end an operation; most `next` messages are passed unread.
fn may_matter(text: &str) -> bool {
    text.contains("\"complete\"") || text.contains("\"error\"") || text.contains("\"data\":null")
}

/// A response from which nothing was executed: no data, and errors without a path (the same
/// rule as over HTTP, see [`crate::graphql::is_request_error`]).
fn is_request_error(payload: &Value) -> bool {
    payload.get("data").is_none_or(Value::is_null)
        && payload["errors"].as_array().is_some_and(|errors| {
            !errors.is_empty()
                && errors.iter().all(|error| {
                    error
                        .get("path")
                        .is_none_or(|path| path.as_array().is_none_or(Vec::is_empty))
                })
        })
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

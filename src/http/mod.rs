//! The HTTP surface: routes and the tower layers around them.

pub mod bundle;
pub mod client_addr;
pub mod dashboard;
pub mod graphiql;
pub mod graphql;
pub mod health;
pub mod ws;

use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderName, HeaderValue, Method, Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{graphql::AppSchema, state::SharedState};

/// What the handlers share: the application state and the schema built on it.
#[derive(Clone)]
pub struct HttpState {
    pub state: SharedState,
    pub schema: AppSchema,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(http: HttpState) -> Router {
    let config = &http.state.config;

    // Bounded in time and size. The GraphQL handler reads the body into memory, so the limit
    // applies to it too, and a declared Content-Length over the limit is refused unread.
    let bounded = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphiql", get(graphiql::graphiql))
        .route("/graphiql/assets/{file}", get(graphiql::asset))
        .route("/dashboard", get(dashboard::dashboard))
        .route("/dashboard/assets/{file}", get(dashboard::asset))
        .route("/health", get(health::live))
        .route("/health/db", get(health::database))
        .route("/metrics", get(render_metrics))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(axum::middleware::map_response(graphql_errors_for_refusals(
            config.request_timeout,
            config.max_body_bytes,
        )));
    // Sockets live long; their limits are per message and per socket (see `ws`).
    let sockets = Router::new().route("/graphql/ws", get(ws::upgrade));

    let mut app = bounded.merge(sockets).with_state(http.clone());
    if !config.cors_origins.is_empty() {
        let origins = config
            .cors_origins
            .iter()
            .filter_map(|origin| HeaderValue::from_str(origin).ok())
            .collect::<Vec<_>>();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-api-key"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    app.layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|id| id.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!(
                    "http request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    request_id,
                    tenant_id = tracing::field::Empty,
                    schema = tracing::field::Empty,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The time and size layers answer 408 and 413 before GraphQL runs; their bodies become
/// GraphQL errors with the contract's codes, so that every refusal reads the same way.
fn graphql_errors_for_refusals(
    timeout: std::time::Duration,
    max_body_bytes: usize,
) -> impl Fn(Response) -> std::future::Ready<Response> + Clone {
    move |response: Response| {
        let (code, message) = match response.status() {
            StatusCode::REQUEST_TIMEOUT => (
                "TIMEOUT",
                format!(
                    "the request took longer than {} s; work it started goes on",
                    timeout.as_secs()
                ),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "BAD_USER_INPUT",
                format!("the request body is larger than {max_body_bytes} bytes"),
            ),
            _ => return std::future::ready(response),
        };
        let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
        std::future::ready(
            (
                response.status(),
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response(),
        )
    }
}

async fn render_metrics(State(http): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        http.state.metrics.render(),
    )
}

/// The client's `User-Agent`, recorded with the sessions it opens.
fn user_agent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .map(str::to_owned)
}

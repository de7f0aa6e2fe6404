//! GraphQL over HTTP: `POST /graphql` (JSON, batches of at most ten), `GET /graphql` (queries only,
//! or GraphiQL for a browser), and the shared execution path with authentication and metrics.

use std::net::SocketAddr;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{BatchRequest, BatchResponse, ErrorExtensions, Request, ServerError};
use async_graphql_axum::GraphQLResponse;
use axum::{
    body::Bytes,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use crate::{
    auth::{self, RequestContext},
    error::AppError,
    graphql::MAX_BATCH_OPERATIONS,
    http::HttpState,
};

pub async fn post(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !is_json(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::BadUserInput {
                field: None,
                message: "send the request as application/json".into(),
            },
        );
    }
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                AppError::BadUserInput {
                    field: None,
                    message: "the body is not a GraphQL request (or a non-empty array of them)"
                        .into(),
                },
            );
        }
    };
    // serde reads `{}` and even `[]` as a request with no query: refuse them here.
    if batch.iter().any(|request| request.query.trim().is_empty()) {
        return error_response(
            StatusCode::BAD_REQUEST,
            AppError::BadUserInput {
                field: None,
                message: "every request needs a query".into(),
            },
        );
    }
    if let BatchRequest::Batch(requests) = &batch
        && requests.len() > MAX_BATCH_OPERATIONS
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            AppError::BadUserInput {
                field: None,
                message: format!("a batch may hold at most {MAX_BATCH_OPERATIONS} operations"),
            },
        );
    }
    execute(&http, &headers, peer, batch).await
}

pub async fn get(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let query = uri.query().unwrap_or_default();
    if query.is_empty() && accepts_html(&headers) {
        return crate::http::graphiql::page(&headers);
    }
    let request = match Query::<GetParams>::try_from_uri(&uri)
        .ok()
        .and_then(|Query(params)| params.into_request())
    {
        Some(request) => request,
        None => {
            return error_response(
                StatusCode::BAD_REQUEST,
                AppError::BadUserInput {
                    field: None,
                    message: "expected ?query=...&variables=...&operationName=...".into(),
                },
            );
        }
    };
    if !is_query_operation(&request) {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            AppError::BadUserInput {
                field: None,
                message: "only queries may be sent with GET; use POST for mutations".into(),
            },
        );
    }
    execute(&http, &headers, peer, BatchRequest::Single(request)).await
}

/// GraphQL-over-HTTP GET parameters; `variables` and `extensions` are JSON text.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    query: String,
    operation_name: Option<String>,
    variables: Option<String>,
}

impl GetParams {
    fn into_request(self) -> Option<Request> {
        let mut request = Request::new(self.query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = self.variables {
            let json = serde_json::from_str(&variables).ok()?;
            request = request.variables(async_graphql::Variables::from_json(json));
        }
        Some(request)
    }
}

/// Authenticates once for the whole batch, then runs each operation with the request context.
async fn execute(
    http: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
    batch: BatchRequest,
) -> Response {
    let credentials = match auth::Credentials::from_headers(headers) {
        Ok(credentials) => credentials,
        Err(err) => return error_response(StatusCode::OK, err),
    };
    let principal = match auth::authenticate(&http.state, credentials).await {
        Ok(principal) => principal,
        Err(err) => return error_response(StatusCode::OK, err),
    };
    // The request span of the HTTP layer (see `router`) declares these fields.
    principal.record_tenant(&tracing::Span::current());
    let context = RequestContext {
        principal,
        client_addr: Some(super::client_addr::client_addr(
            &http.state.config.trusted_proxies,
            peer.ip(),
            headers,
        )),
    };
    let response = match batch {
        BatchRequest::Single(request) => {
            BatchResponse::Single(execute_one(http, request, &context).await)
        }
        BatchRequest::Batch(requests) => {
            let mut responses = Vec::with_capacity(requests.len());
            for request in requests {
                responses.push(execute_one(http, request, &context).await);
            }
            BatchResponse::Batch(responses)
        }
    };
    GraphQLResponse::from(response).into_response()
}

async fn execute_one(
    http: &HttpState,
    mut request: Request,
    context: &RequestContext,
) -> async_graphql::Response {
    request.data = crate::graphql::operation_data(context.clone());
    http.schema.execute(request).await
}

/// A GraphQL-shaped error for a request refused before execution.
pub fn error_response(status: StatusCode, err: AppError) -> Response {
    let extended = err.extend();
    let mut error = ServerError::new(extended.message, None);
    error.extensions = extended.extensions;
    let body = async_graphql::Response::from_errors(vec![error]);
    (status, GraphQLResponse::from(body)).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// True when the operation the request selects is a query. Documents that fail to parse count as
/// queries here: execution reports the syntax error.
fn is_query_operation(request: &Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return true;
    };
    let selected = match (&document.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => Some(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => operations
            .iter()
            .find(|(op_name, _)| op_name.as_str() == name)
            .map(|(_, operation)| operation.node.ty),
        (DocumentOperations::Multiple(_), None) => None,
    };
    selected.is_none_or(|ty| ty == OperationType::Query)
}

//! GraphQL over HTTP: `POST /graphql` (JSON, batches of at most ten), `GET /graphql` (queries only,
//! or GraphiQL for a browser), and the shared execution path with authentication and metrics.
//!
//! Responses follow the GraphQL-over-HTTP specification: the media type is negotiated from
//! `Accept` ([`Acceptance`]); with `application/graphql-response+json` a request error (nothing
//! executed) is a 4xx without `data`, with `application/json` every well-formed request is a 200.
//! A batch (a JSON array, this server's extension) is answered as `application/json`, 200, one
//! result per operation.

use std::{collections::BTreeMap, net::SocketAddr};

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{BatchRequest, BatchResponse, ErrorExtensions, Request, ServerError};
use axum::{
    body::Bytes,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use crate::{
    auth::{self, RequestContext},
    error::AppError,
    graphql::{MAX_BATCH_OPERATIONS, PERSISTED_QUERY, QueriesOnly, is_request_error},
    http::HttpState,
};

pub async fn post(
    State(http): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let acceptance = Acceptance::from_headers(&headers);
    let Some(format) = acceptance.single() else {
        return not_acceptable();
    };
    if let Err(refusal) = check_content_type(&headers) {
        return error_response(format, StatusCode::UNSUPPORTED_MEDIA_TYPE, refusal);
    }
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(_) => {
            return error_response(
                format,
                StatusCode::BAD_REQUEST,
                AppError::BadUserInput {
                    field: None,
                    message: "the body is not a GraphQL request (or a non-empty array of them)"
                        .into(),
                },
            );
        }
    };
    // serde reads `{}` and even `[]` as a request with no query: refuse them here (a persisted
    // query may come as its hash alone).
    if batch.iter().any(|request| !has_document(request)) {
        return error_response(
            format,
            StatusCode::BAD_REQUEST,
            AppError::BadUserInput {
                field: None,
                message: "every request needs a query".into(),
            },
        );
    }
    if let BatchRequest::Batch(requests) = &batch {
        if requests.len() > MAX_BATCH_OPERATIONS {
            return error_response(
                format,
                StatusCode::BAD_REQUEST,
                AppError::BadUserInput {
                    field: None,
                    message: format!("a batch may hold at most {MAX_BATCH_OPERATIONS} operations"),
                },
            );
        }
        // A batch is an array of GraphQL responses, which only `application/json` describes.
        if acceptance.batch().is_none() {
            return not_acceptable();
        }
    }
    execute(&http, &headers, peer, format, batch).await
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
    let Some(format) = Acceptance::from_headers(&headers).single() else {
        return not_acceptable();
    };
    let request = match Query::<GetParams>::try_from_uri(&uri)
        .ok()
        .and_then(|Query(params)| params.into_request())
    {
        Some(request) => request,
        None => {
            return error_response(
                format,
                StatusCode::BAD_REQUEST,
                AppError::BadUserInput {
                    field: None,
                    message: "expected ?query=...&variables=...&operationName=...".into(),
                },
            );
        }
    };
    if !is_query_operation(&request) {
        let mut response = error_response(
            format,
            StatusCode::METHOD_NOT_ALLOWED,
            AppError::BadUserInput {
                field: None,
                message: "only queries may be sent with GET: mutations go by POST, subscriptions \
                          over /graphql/ws"
                    .into(),
            },
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&http, &headers, peer, format, BatchRequest::Single(request)).await
}

/// GraphQL-over-HTTP GET parameters; `variables` and `extensions` are JSON text.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParams {
    #[serde(default)]
    query: String,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

impl GetParams {
    /// The request, or `None` when a parameter is missing or malformed.
    fn into_request(self) -> Option<Request> {
        let mut request = Request::new(self.query);
        if let Some(name) = self.operation_name {
            request = request.operation_name(name);
        }
        if let Some(variables) = self.variables {
            match serde_json::from_str(&variables).ok()? {
                json @ serde_json::Value::Object(_) => {
                    request = request.variables(async_graphql::Variables::from_json(json));
                }
                serde_json::Value::Null => {}
                _ => return None,
            }
        }
        if let Some(extensions) = self.extensions {
            match serde_json::from_str(&extensions).ok()? {
                serde_json::Value::Object(map) => {
                    for (name, value) in map {
                        request
                            .extensions
                            .insert(name, async_graphql::Value::from_json(value).ok()?);
                    }
                }
                serde_json::Value::Null => {}
                _ => return None,
            }
        }
        // A persisted query's operation is known only once its hash is looked up.
        request.data.insert(QueriesOnly);
        has_document(&request).then_some(request)
    }
}

/// A request names its document: by its text, or by the hash of a persisted query.
fn has_document(request: &Request) -> bool {
    !request.query.trim().is_empty() || request.extensions.contains_key(PERSISTED_QUERY)
}

/// Authenticates once for the whole batch, then runs each operation with the request context.
async fn execute(
    http: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
    format: MediaType,
    batch: BatchRequest,
) -> Response {
    let operations = match &batch {
        BatchRequest::Single(_) => 1,
        BatchRequest::Batch(requests) => requests.len(),
    };
    let principal = match auth::Credentials::from_headers(headers) {
        Ok(credentials) => auth::authenticate(&http.state, credentials).await,
        Err(err) => Err(err),
    }
    .and_then(|principal| {
        // Every operation of a batch counts; over the rate, none of them runs.
        let state = &http.state;
        state
            .rate_limits
            .admit(&state.metrics, &principal, operations)?;
        Ok(principal)
    });
    let principal = match principal {
        Ok(principal) => principal,
        // Nothing runs: a request error, for each operation of a batch.
        Err(err) => {
            let refused = || async_graphql::Response::from_errors(vec![server_error(&err)]);
            let response = match &batch {
                BatchRequest::Single(_) => BatchResponse::Single(refused()),
                BatchRequest::Batch(requests) => {
                    BatchResponse::Batch(requests.iter().map(|_| refused()).collect())
                }
            };
            return graphql_response(format, response);
        }
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
        user_agent: super::user_agent(headers),
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
    graphql_response(format, response)
}

async fn execute_one(
    http: &HttpState,
    mut request: Request,
    context: &RequestContext,
) -> async_graphql::Response {
    let queries_only = request
        .data
        .contains_key(&std::any::TypeId::of::<QueriesOnly>());
    request.data = crate::graphql::operation_data(context.clone());
    if queries_only {
        request.data.insert(QueriesOnly);
    }
    http.schema.execute(request).await
}

/// The body of one GraphQL response, written as async-graphql's `Response` is, but without a
/// `data` entry when nothing was executed.
#[derive(serde::Serialize)]
struct ResponseBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, async_graphql::Value>,
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'a [ServerError],
}

impl<'a> From<&'a async_graphql::Response> for ResponseBody<'a> {
    fn from(response: &'a async_graphql::Response) -> Self {
        ResponseBody {
            data: (!is_request_error(response)).then_some(&response.data),
            extensions: &response.extensions,
            errors: &response.errors,
        }
    }
}

/// Status, media type and body of what was executed (or refused with a request error).
///
/// - `application/graphql-response+json`: 200 whenever something was executed (partial data
///   and field errors included); a request error gets the 4xx (5xx for an internal failure) its
///   `extensions.code` calls for.
/// - `application/json`: 200 for every well-formed request, whatever its GraphQL errors.
/// - A batch: `application/json`, 200, one result per operation, in order.
fn graphql_response(format: MediaType, response: BatchResponse) -> Response {
    let (format, status, body) = match &response {
        BatchResponse::Single(single) => {
            let status = match format {
                MediaType::GraphQLResponse if is_request_error(single) => {
                    request_error_status(&single.errors)
                }
                _ => StatusCode::OK,
            };
            (format, status, json_body(&ResponseBody::from(single)))
        }
        BatchResponse::Batch(responses) => (
            MediaType::Json,
            StatusCode::OK,
            json_body(&responses.iter().map(ResponseBody::from).collect::<Vec<_>>()),
        ),
    };
    let mut http_response = json_response(format, status, body);
    let headers = http_response.headers_mut();
    if response.is_ok()
        && let Some(cache_control) = response.cache_control().value()
        && let Ok(value) = HeaderValue::from_str(&cache_control)
    {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.extend(response.http_headers());
    http_response
}

/// The status of a request error under `application/graphql-response+json`, from the first
/// error's `extensions.code`.
fn request_error_status(errors: &[ServerError]) -> StatusCode {
    let code = errors
        .first()
        .and_then(|error| error.extensions.as_ref())
        .and_then(|extensions| extensions.get("code"))
        .and_then(|code| match code {
            async_graphql::Value::String(code) => Some(code.as_str()),
            _ => None,
        });
    match code {
        Some("UNAUTHENTICATED") => StatusCode::UNAUTHORIZED,
        Some("FORBIDDEN") => StatusCode::FORBIDDEN,
        Some("RATE_LIMITED") => StatusCode::TOO_MANY_REQUESTS,
        Some("TIMEOUT" | "SERVER_UNAVAILABLE") => StatusCode::SERVICE_UNAVAILABLE,
        Some("INTERNAL") => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Written straight from the values, with no JSON tree in between.
fn json_body(body: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(body).expect("GraphQL values serialize to JSON")
}

fn json_response(format: MediaType, status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // The same URL answers differently by `Accept`: caches must keep the answers apart.
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn server_error(err: &AppError) -> ServerError {
    let extended = err.extend();
    let mut error = ServerError::new(extended.message, None);
    error.extensions = extended.extensions;
    error
}

/// A GraphQL-shaped error (no `data`) for a request refused before it was read as GraphQL.
pub fn error_response(format: MediaType, status: StatusCode, err: AppError) -> Response {
    let body = serde_json::json!({ "errors": [server_error(&err)] });
    json_response(format, status, json_body(&body))
}

/// 406: the client accepts neither GraphQL response media type (the answer says so in JSON).
fn not_acceptable() -> Response {
    error_response(
        MediaType::Json,
        StatusCode::NOT_ACCEPTABLE,
        AppError::BadUserInput {
            field: None,
            message: "accept application/graphql-response+json or application/json \
                      (a batch is answered as application/json)"
                .into(),
        },
    )
}

/// `Content-Type` of a POST: `application/json`, with no charset but UTF-8.
fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let refusal = || AppError::BadUserInput {
        field: None,
        message: "send the request as application/json (UTF-8)".into(),
    };
    let range = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(MediaRange::parse)
        .ok_or_else(refusal)?;
    if range.is("application", "json") && range.charset_is_utf8() {
        Ok(())
    } else {
        Err(refusal())
    }
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

/// The media types a GraphQL response is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    /// `application/graphql-response+json`: the status code tells a request error (4xx, 5xx)
    /// from an executed operation (200).
    GraphQLResponse,
    /// `application/json`: 200 for every well-formed request; the body tells the rest.
    Json,
}

impl MediaType {
    pub const fn content_type(self) -> &'static str {
        match self {
            MediaType::GraphQLResponse => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }
}

/// What a client's `Accept` header says of the two response media types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Acceptance {
    graphql_response: Preference,
    json: Preference,
}

/// The quality (in thousandths) the most specific matching media range gives a media type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Preference {
    quality: u16,
    /// 2: named exactly; 1: `application/*`; 0: `*/*`; `None`: not matched.
    specificity: Option<u8>,
}

impl Preference {
    fn consider(&mut self, specificity: u8, quality: u16) {
        match self.specificity {
            Some(known) if known > specificity => {}
            Some(known) if known == specificity => self.quality = self.quality.max(quality),
            _ => {
                self.specificity = Some(specificity);
                self.quality = quality;
            }
        }
    }
}

impl Acceptance {
    pub fn from_headers(headers: &HeaderMap) -> Acceptance {
        Acceptance::parse(
            headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|value| value.to_str().ok()),
        )
    }

    /// Reads `Accept` header values; none (or only blank ones) means `application/json`.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Acceptance {
        let mut acceptance = Acceptance::default();
        let mut any = false;
        for range in values.into_iter().flat_map(|value| value.split(',')) {
            if range.trim().is_empty() {
                continue;
            }
            any = true;
            let Some(range) = MediaRange::parse(range) else {
                continue;
            };
            let Some(quality) = range.quality() else {
                continue;
            };
            if let Some(specificity) = range.specificity("application", "graphql-response+json") {
                acceptance.graphql_response.consider(specificity, quality);
            }
            if let Some(specificity) = range.specificity("application", "json") {
                acceptance.json.consider(specificity, quality);
            }
        }
        if !any {
            acceptance.json.consider(0, 1000);
        }
        acceptance
    }

    /// The media type of a single response: the one of higher quality; at equal quality
    /// `application/graphql-response+json` when it is named, `application/json` when only a
    /// wildcard covers it. `None`: neither is acceptable (406).
    pub fn single(&self) -> Option<MediaType> {
        let graphql_response = self.graphql_response.quality;
        let json = self.json.quality;
        if graphql_response == 0 && json == 0 {
            None
        } else if graphql_response > json
            || (graphql_response == json && self.graphql_response.specificity == Some(2))
        {
            Some(MediaType::GraphQLResponse)
        } else {
            Some(MediaType::Json)
        }
    }

    /// The media type of a batch (an array of responses): `application/json` only.
    pub fn batch(&self) -> Option<MediaType> {
        (self.json.quality > 0).then_some(MediaType::Json)
    }
}

/// One `type/subtype; name=value` of a `Content-Type` or `Accept` header.
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    parameters: Vec<(&'a str, &'a str)>,
}

impl<'a> MediaRange<'a> {
    fn parse(text: &'a str) -> Option<MediaRange<'a>> {
        let mut parts = text.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let token = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&byte))
        };
        if !token(kind) || !token(subtype) || (kind == "*" && subtype != "*") {
            return None;
        }
        let mut parameters = Vec::new();
        for parameter in parts {
            let (name, value) = parameter.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|quoted| quoted.strip_suffix('"'))
                .unwrap_or(value);
            parameters.push((name.trim(), value));
        }
        Some(MediaRange {
            kind,
            subtype,
            parameters,
        })
    }

    fn parameter(&self, name: &str) -> Option<&'a str> {
        self.parameters
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    /// Absent, or UTF-8: the only encoding GraphQL over HTTP uses.
    fn charset_is_utf8(&self) -> bool {
        self.parameter("charset").is_none_or(|charset| {
            charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
        })
    }

    /// How specifically this range names `kind/subtype`, when it covers it (in UTF-8).
    fn specificity(&self, kind: &str, subtype: &str) -> Option<u8> {
        if !self.charset_is_utf8() {
            return None;
        }
        if self.kind == "*" {
            Some(0)
        } else if !self.kind.eq_ignore_ascii_case(kind) {
            None
        } else if self.subtype == "*" {
            Some(1)
        } else if self.subtype.eq_ignore_ascii_case(subtype) {
            Some(2)
        } else {
            None
        }
    }

    /// `q` in thousandths (1000 when absent); `None` when it is malformed.
    fn quality(&self) -> Option<u16> {
        let Some(q) = self.parameter("q") else {
            return Some(1000);
        };
        let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
        if fraction.len() > 3 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
        match whole {
            "0" => Some(thousandths),
            "1" if thousandths == 0 => Some(1000),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(accept: &[&str]) -> Option<MediaType> {
        Acceptance::parse(accept.iter().copied()).single()
    }

    #[test]
    fn without_accept_or_with_wildcards_the_answer_is_json() {
        assert_eq!(single(&[]), Some(MediaType::Json));
        assert_eq!(single(&[""]), Some(MediaType::Json));
        assert_eq!(single(&["*/*"]), Some(MediaType::Json));
        assert_eq!(single(&["application/*"]), Some(MediaType::Json));
        assert_eq!(single(&["application/json"]), Some(MediaType::Json));
        assert_eq!(
            single(&["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"]),
            Some(MediaType::Json)
        );
    }

    #[test]
    fn graphql_response_json_is_preferred_when_named_at_equal_or_higher_quality() {
        assert_eq!(
            single(&["application/graphql-response+json"]),
            Some(MediaType::GraphQLResponse)
        );
        assert_eq!(
            single(&["application/graphql-response+json, application/json;q=0.9"]),
            Some(MediaType::GraphQLResponse)
        );
        assert_eq!(
            single(&["application/json, application/graphql-response+json"]),
            Some(MediaType::GraphQLResponse)
        );
        assert_eq!(
            single(&["application/json", "application/graphql-response+json"]),
            Some(MediaType::GraphQLResponse)
        );
        assert_eq!(
            single(&["application/graphql-response+json;q=0.5, application/json"]),
            Some(MediaType::Json)
        );
        assert_eq!(
            single(&["APPLICATION/GRAPHQL-RESPONSE+JSON; charset=UTF-8"]),
            Some(MediaType::GraphQLResponse)
        );
        // A wildcard covers it only when JSON is refused outright.
        assert_eq!(
            single(&["application/json;q=0, */*"]),
            Some(MediaType::GraphQLResponse)
        );
    }

    #[test]
    fn unsupported_types_only_are_not_acceptable() {
        assert_eq!(single(&["text/html"]), None);
        assert_eq!(single(&["text/plain, image/*"]), None);
        assert_eq!(single(&["application/json;q=0"]), None);
        assert_eq!(
            single(&["application/graphql-response+json;q=0, application/json;q=0, */*"]),
            None
        );
        assert_eq!(single(&["application/json; charset=latin1"]), None);
        assert_eq!(single(&["nonsense"]), None);
        assert_eq!(single(&["application/json;q=2"]), None);
    }

    #[test]
    fn a_batch_needs_json_to_be_acceptable() {
        let batch = |accept: &str| Acceptance::parse([accept]).batch();
        assert_eq!(batch("*/*"), Some(MediaType::Json));
        assert_eq!(
            batch("application/graphql-response+json, application/json;q=0.9"),
            Some(MediaType::Json)
        );
        assert_eq!(batch("application/graphql-response+json"), None);
    }

    #[test]
    fn quality_values_follow_the_http_grammar() {
        let quality = |range: &str| MediaRange::parse(range).and_then(|range| range.quality());
        assert_eq!(quality("a/b"), Some(1000));
        assert_eq!(quality("a/b;q=1"), Some(1000));
        assert_eq!(quality("a/b; q=1.000"), Some(1000));
        assert_eq!(quality("a/b;q=0.9"), Some(900));
        assert_eq!(quality("a/b;Q=0.125"), Some(125));
        assert_eq!(quality("a/b;q=0"), Some(0));
        assert_eq!(quality("a/b;q=1.5"), None);
        assert_eq!(quality("a/b;q=0.1234"), None);
        assert_eq!(quality("a/b;q=-1"), None);
        assert_eq!(quality("a/b;q="), None);
    }

    #[test]
    fn a_post_body_must_be_utf8_json() {
        let check = |content_type: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
            check_content_type(&headers).is_ok()
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(check("application/json;charset=\"UTF-8\""));
        assert!(!check("application/json; charset=latin1"));
        assert!(!check("text/plain"));
        assert!(!check("application/graphql"));
        assert!(!check("application/jsonx"));
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }
}

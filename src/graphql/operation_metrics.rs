//! Counts and times every executed operation by name, over HTTP and WebSocket alike, and, with
//! `GRAPHQL_STATEMENT_COUNTS`, reports in `extensions.sqlStatements` the statements the operation
//! itself sent, DataLoader batches included (see [`crate::db::statements`]).

use std::time::Instant;

use async_graphql::{Response, Value};

use crate::{db::statements, state::AppState};

/// Runs one operation (not a subscription) and records it, unless nothing was executed: a
/// document that did not parse or validate is not an operation.
pub(super) async fn measured(
    state: &AppState,
    operation_name: Option<&str>,
    operation: impl Future<Output = Response>,
) -> Response {
    let started = Instant::now();
    let (mut response, statements) = statements::counted(operation).await;
    if super::is_request_error(&response) {
        return response;
    }
    state
        .metrics
        .record_operation(operation_name, response.is_ok(), started.elapsed());
    if state.config.graphql_statement_counts {
        response
            .extensions
            .insert("sqlStatements".to_owned(), Value::from(statements));
    }
    response
}

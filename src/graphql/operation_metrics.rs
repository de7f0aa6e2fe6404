//! Counts and times every executed operation by name, over HTTP and WebSocket alike, and, with
//! `GRAPHQL_STATEMENT_COUNTS`, reports in `extensions.sqlStatements` the statements the operation
//! itself sent, DataLoader batches included (see [`crate::db::statements`]).

use std::{sync::Arc, time::Instant};

use async_graphql::{
    Response, Value,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute},
};

use crate::{db::statements, primitives::metrics::Metrics};

#[derive(Clone)]
pub struct OperationMetrics {
    pub metrics: Metrics,
    pub report_statements: bool,
}

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Extension for OperationMetrics {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let (mut response, statements) = statements::counted(next.run(ctx, operation_name)).await;
        self.metrics
            .record_operation(operation_name, response.is_ok(), started.elapsed());
        if self.report_statements {
            response
                .extensions
                .insert("sqlStatements".to_owned(), Value::from(statements));
        }
        response
    }
}

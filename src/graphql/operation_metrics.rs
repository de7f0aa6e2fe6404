//! Counts and times every executed operation by name, over HTTP and WebSocket alike.

use std::{sync::Arc, time::Instant};

use async_graphql::{
    Response,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute},
};

use crate::primitives::metrics::Metrics;

pub struct OperationMetrics(pub Metrics);

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetrics(self.0.clone()))
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
        let response = next.run(ctx, operation_name).await;
        self.0
            .record_operation(operation_name, response.is_ok(), started.elapsed());
        response
    }
}

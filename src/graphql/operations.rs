//! How every operation runs, over HTTP and WebSocket alike: a socket's operation is authorised
//! anew ([`reauthorize`]), a tenant's gets its DataLoaders, the request its parsed document
//! ([`DocumentCache`]); then async-graphql executes it, the operation is counted and timed
//! ([`operation_metrics`]), and every error leaves with its code ([`error_codes`]).
//!
//! These are request-level steps around the schema, not schema extensions: with any extension
//! registered, async-graphql builds a `ResolveInfo` and passes every field and every list item
//! through each extension's `resolve`, which cost more than the rest of a tenant's read.

use std::{any::TypeId, sync::Arc};

use async_graphql::{
    Data, Executor, ObjectType, Request, Response, Schema, ServerResult, SubscriptionType,
    futures_util::stream::{self, BoxStream, StreamExt},
    parser::types::OperationType,
};

use super::{
    document_cache::{DocumentCache, RequestDocument},
    error_codes::with_codes,
    operation_metrics,
    reauthorize::{self, SocketCredentials},
    tenant_data,
};
use crate::state::SharedState;

/// In the schema's data: the same schema validating in async-graphql's fast mode (the limits,
/// fragment cycles), for an operation the cache knows passed every rule with no variables.
pub struct Revalidation<Q, M, S>(pub Schema<Q, M, S>);

/// Runs operations on a schema built by `super::serve` (its data holds the state, the
/// document cache and the [`Revalidation`] schema).
pub struct Operations<Q, M, S> {
    schema: Schema<Q, M, S>,
}

impl<Q, M, S> Clone for Operations<Q, M, S> {
    fn clone(&self) -> Self {
        Operations {
            schema: self.schema.clone(),
        }
    }
}

impl<Q, M, S> Operations<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    pub fn new(schema: Schema<Q, M, S>) -> Self {
        Operations { schema }
    }

    fn state(&self) -> &SharedState {
        self.schema
            .data::<SharedState>()
            .expect("the schema is built with the state")
    }

    /// The steps before async-graphql's own; `session` is a socket's.
    async fn prepare(
        &self,
        mut request: Request,
        session: Option<&Data>,
    ) -> ServerResult<(Request, Option<RequestDocument>)> {
        let state = self.state();
        let socket = session
            .and_then(|data| data.get(&TypeId::of::<SocketCredentials>()))
            .and_then(|data| data.downcast_ref::<SocketCredentials>());
        if let Some(socket) = socket {
            reauthorize::authorize(state, socket, &mut request).await?;
        }
        // After the socket's authorisation: the loaders belong to the principal it yields.
        tenant_data::insert_loaders(state, &mut request);
        let document = match self.schema.data::<DocumentCache>() {
            Some(cache) => cache.prepare(&mut request)?,
            None => None,
        };
        Ok((request, document))
    }

    /// The schema to run the request on: the fast-validating one when the full validation is
    /// known to pass.
    fn schema_for(&self, document: Option<&RequestDocument>) -> &Schema<Q, M, S> {
        match self.schema.data::<Revalidation<Q, M, S>>() {
            Some(Revalidation(fast)) if document.is_some_and(RequestDocument::validated) => fast,
            _ => &self.schema,
        }
    }

    /// Runs a query or mutation, measured; `session` is a socket's.
    async fn run(
        &self,
        request: Request,
        document: Option<RequestDocument>,
        session: Option<Arc<Data>>,
    ) -> Response {
        let schema = self.schema_for(document.as_ref());
        let name = document
            .as_ref()
            .and_then(RequestDocument::operation)
            .and_then(|(name, _)| name);
        let operation = async {
            match session {
                Some(session) => schema
                    .execute_stream_with_session_data(request, session)
                    .next()
                    .await
                    .unwrap_or_default(),
                None => schema.execute(request).await,
            }
        };
        let response = operation_metrics::measured(self.state(), name, operation).await;
        if let Some(document) = &document
            && !is_request_error(&response)
        {
            document.passed_validation();
        }
        response
    }
}

impl<Q, M, S> Executor for Operations<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    async fn execute(&self, request: Request) -> Response {
        let response = match self.prepare(request, None).await {
            Ok((request, document)) => self.run(request, document, None).await,
            Err(err) => Response::from_errors(vec![err]),
        };
        with_codes(response)
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let operations = self.clone();
        let session = session_data.unwrap_or_default();
        stream::once(async move {
            let (request, document) = match operations.prepare(request, Some(&session)).await {
                Ok(prepared) => prepared,
                Err(err) => return stream::iter([Response::from_errors(vec![err])]).boxed(),
            };
            let operation = document.as_ref().and_then(RequestDocument::operation);
            if let Some((_, OperationType::Subscription)) = operation {
                return operations
                    .schema_for(document.as_ref())
                    .execute_stream_with_session_data(request, session);
            }
            let response = operations.run(request, document, Some(session)).await;
            stream::iter([response]).boxed()
        })
        .flatten()
        .map(with_codes)
        .boxed()
    }
}

/// True when nothing was executed: the document did not parse, validate or fit the limits, its
/// variables did not coerce, or the caller was refused. Such errors carry no `path` and the
/// response no data; an execution that failed at the root still has its errors under a path.
pub fn is_request_error(response: &Response) -> bool {
    !response.errors.is_empty()
        && response.data == async_graphql::Value::Null
        && response.errors.iter().all(|error| error.path.is_empty())
}

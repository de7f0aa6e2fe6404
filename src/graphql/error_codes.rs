//! Every error a client sees carries a contract `extensions.code`, including the ones
//! async-graphql makes itself (syntax, validation, depth and complexity limits).

use std::sync::Arc;

use async_graphql::{
    Response, ServerError,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe},
    futures_util::stream::BoxStream,
};
use futures_util::StreamExt;

pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        with_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(with_codes).boxed()
    }
}

fn with_codes(mut response: Response) -> Response {
    response.errors.iter_mut().for_each(add_code);
    response
}

/// Errors without a path concern the document itself (it does not parse, validate or fit the
/// limits): the caller's input. Errors under a path without a code come from a resolver.
fn add_code(error: &mut ServerError) {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        let code = if error.path.is_empty() {
            "BAD_USER_INPUT"
        } else {
            "INTERNAL"
        };
        extensions.set("code", code);
    }
}

//! Every error a client sees carries a contract `extensions.code`, including the ones
//! async-graphql makes itself (syntax, validation, depth and complexity limits).

use async_graphql::{Response, ServerError};

/// Every error of a response with its code (see [`super::operations`]).
pub(super) fn with_codes(mut response: Response) -> Response {
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

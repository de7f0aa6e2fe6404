//! GraphiQL, served by the binary itself: the page (`GET /graphiql`, and `GET /graphql` from a
//! browser), its start-up script, style and icon, and the GraphiQL and React bundles vendored in
//! `assets/graphiql` (see the README there), as one [`Bundle`].
//!
//! The page loads nothing from another origin and its Content-Security-Policy allows nothing
//! else: no inline script, connections only back to this server.

use std::sync::LazyLock;

use axum::{extract::Path, http::HeaderMap, response::Response};

use super::bundle::{Bundle, CSS, JAVASCRIPT, SVG, Source, content_security_policy};

/// Every file the page loads, by the name `index.html` gives it.
const SOURCES: &[Source] = &[
    (
        "react.production.min.js",
        JAVASCRIPT,
        include_bytes!("../../../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        JAVASCRIPT,
        include_bytes!("../../../assets/graphiql/react-dom.production.min.js"),
    ),
    (
        "graphiql.min.js",
        JAVASCRIPT,
        include_bytes!("../../../assets/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql.min.css",
        CSS,
        include_bytes!("../../../assets/graphiql/graphiql.min.css"),
    ),
    ("start.js", JAVASCRIPT, include_bytes!("start.js")),
    ("page.css", CSS, include_bytes!("page.css")),
    ("favicon.svg", SVG, include_bytes!("favicon.svg")),
];

/// `'unsafe-inline'` for styles only: GraphiQL's dialogs add a `<style>` element of their own.
const DIRECTIVES: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:";

static BUNDLE: LazyLock<Bundle> =
    LazyLock::new(|| Bundle::build("/graphiql/assets/", include_str!("index.html"), SOURCES));

/// `GET /graphiql`: the page, with its Content-Security-Policy.
pub async fn graphiql(headers: HeaderMap) -> Response {
    page(&headers)
}

/// The page; also what `GET /graphql` answers a browser.
pub fn page(headers: &HeaderMap) -> Response {
    BUNDLE.page(&content_security_policy(DIRECTIVES, headers))
}

/// `GET /graphiql/assets/{file}`: an asset by its hashed name.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    BUNDLE.asset(&file, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_by_the_page_with_its_hash() {
        BUNDLE.assert_complete();
    }
}

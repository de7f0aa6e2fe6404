//! The operators' dashboard (`GET /dashboard`): one page, its script, style and icon, compiled in
//! as a [`Bundle`]. The script signs an operator in with the `login` mutation, keeps the token in
//! the tab's `sessionStorage` only, and speaks to `/graphql` and `/graphql/ws` like any other
//! client: the page holds no data and no token, and the server has no page-specific endpoint.
//!
//! Its policy is stricter than GraphiQL's: no inline style either. Everything the script shows
//! goes into the page as text, never as markup: tenant names and domains are anybody's input.

use std::sync::LazyLock;

use axum::{extract::Path, http::HeaderMap, response::Response};

use super::bundle::{Bundle, CSS, JAVASCRIPT, SVG, Source, content_security_policy};

/// Every file the page loads, by the name `index.html` gives it.
const SOURCES: &[Source] = &[
    ("dashboard.js", JAVASCRIPT, include_bytes!("dashboard.js")),
    ("dashboard.css", CSS, include_bytes!("dashboard.css")),
    (
        "favicon.svg",
        SVG,
        include_bytes!("../graphiql/favicon.svg"),
    ),
];

const DIRECTIVES: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'";

static BUNDLE: LazyLock<Bundle> =
    LazyLock::new(|| Bundle::build("/dashboard/assets/", include_str!("index.html"), SOURCES));

/// `GET /dashboard`: the page, with its Content-Security-Policy.
pub async fn dashboard(headers: HeaderMap) -> Response {
    BUNDLE.page(&content_security_policy(DIRECTIVES, &headers))
}

/// `GET /dashboard/assets/{file}`: an asset by its hashed name.
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

//! GraphiQL, served by the binary itself: the page (`GET /graphiql`, and `GET /graphql` from a
//! browser), its start-up script, style and icon, and the GraphiQL and React bundles vendored in
//! `assets/graphiql` (see the README there). Every file is compiled in; none is read at run time.
//!
//! Each asset is served under a name that carries a hash of its content
//! (`/graphiql/assets/graphiql-<hash>.min.js`), so browsers may keep it for good; the page itself
//! is revalidated. The page loads nothing from another origin and its Content-Security-Policy
//! allows nothing else: no inline script, connections only back to this server.

use std::sync::LazyLock;

use axum::{
    extract::Path,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, uri::Authority},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

/// Where the assets are served from.
const ASSETS_PREFIX: &str = "/graphiql/assets/";
/// The endpoint the page's subscriptions use (see `index.html`).
const SUBSCRIPTION_PATH: &str = "/graphql/ws";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Logical name (as written in `index.html`), content type and content of every asset.
const SOURCES: &[(&str, &str, &[u8])] = &[
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

const PAGE_TEMPLATE: &str = include_str!("index.html");

/// `'unsafe-inline'` for styles only: GraphiQL's dialogs add a `<style>` element of their own.
/// `connect-src 'self'` covers same-host WebSockets in current browsers; the socket's URL is
/// named as well when the request's host is known, for those that read `'self'` more narrowly.
const CSP_BEFORE_CONNECT: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'";
const CSP_AFTER_CONNECT: &str = "; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

struct Asset {
    /// The name under [`ASSETS_PREFIX`], with the content hash.
    file: String,
    content_type: &'static str,
    body: &'static [u8],
    etag: HeaderValue,
}

struct Bundle {
    assets: Vec<Asset>,
    page: String,
}

static BUNDLE: LazyLock<Bundle> = LazyLock::new(Bundle::build);

impl Bundle {
    fn build() -> Bundle {
        let mut page = PAGE_TEMPLATE.to_owned();
        let assets = SOURCES
            .iter()
            .map(|&(name, content_type, body)| {
                let hash = hex::encode(&Sha256::digest(body)[..8]);
                let file = match name.split_once('.') {
                    Some((stem, extension)) => format!("{stem}-{hash}.{extension}"),
                    None => format!("{name}-{hash}"),
                };
                page = page.replace(
                    &format!("{{{{{name}}}}}"),
                    &format!("{ASSETS_PREFIX}{file}"),
                );
                Asset {
                    file,
                    content_type,
                    body,
                    etag: HeaderValue::from_str(&format!("\"{hash}\""))
                        .expect("a hex hash is a header value"),
                }
            })
            .collect();
        Bundle { assets, page }
    }
}

/// `GET /graphiql`: the page, with its Content-Security-Policy.
pub async fn graphiql(headers: HeaderMap) -> Response {
    page(&headers)
}

/// The page; also what `GET /graphql` answers a browser.
pub fn page(headers: &HeaderMap) -> Response {
    let mut response = BUNDLE.page.clone().into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response_headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    response_headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response_headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(headers)) {
        response_headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// `GET /graphiql/assets/{file}`: an asset by its hashed name; `304` when the browser has it.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = BUNDLE.assets.iter().find(|asset| asset.file == file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',').map(str::trim).any(|tag| {
                tag == "*" || tag.trim_start_matches("W/").as_bytes() == asset.etag.as_bytes()
            })
        });
    let common: [(HeaderName, HeaderValue); 3] = [
        (header::ETAG, asset.etag.clone()),
        (header::CACHE_CONTROL, IMMUTABLE),
        (header::X_CONTENT_TYPE_OPTIONS, NOSNIFF),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// The page's policy; the subscription socket is named explicitly for a plain `Host` header.
fn content_security_policy(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| is_plain_host(host));
    match host {
        Some(host) => format!(
            "{CSP_BEFORE_CONNECT} ws://{host}{SUBSCRIPTION_PATH} \
             wss://{host}{SUBSCRIPTION_PATH}{CSP_AFTER_CONNECT}"
        ),
        None => format!("{CSP_BEFORE_CONNECT}{CSP_AFTER_CONNECT}"),
    }
}

/// A host and optional port, and nothing that could end a CSP source or directive.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
        && host.parse::<Authority>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_the_page_names_an_asset() {
        let page = &BUNDLE.page;
        assert!(!page.contains("{{"), "an unknown asset in index.html");
        for asset in &BUNDLE.assets {
            let path = format!("{ASSETS_PREFIX}{}", asset.file);
            assert!(page.contains(&path), "{path} is not referenced by the page");
        }
    }

    #[test]
    fn asset_names_carry_the_content_hash() {
        let names: Vec<_> = BUNDLE.assets.iter().map(|asset| &asset.file).collect();
        assert!(
            names
                .iter()
                .any(|name| name.starts_with("graphiql-") && name.ends_with(".min.js")),
            "{names:?}"
        );
        for asset in &BUNDLE.assets {
            let hash = asset.etag.to_str().unwrap().trim_matches('"');
            assert_eq!(hash.len(), 16);
            assert!(asset.file.contains(hash));
        }
    }

    #[test]
    fn the_policy_names_the_socket_only_for_a_plain_host() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        let policy = content_security_policy(&headers);
        assert!(policy.contains("connect-src 'self' ws://127.0.0.1:8000/graphql/ws wss://"));
        assert!(policy.starts_with("default-src 'none'; script-src 'self';"));

        headers.insert(header::HOST, HeaderValue::from_static("evil; script-src *"));
        let policy = content_security_policy(&headers);
        assert!(!policy.contains("evil"));
        assert!(policy.contains("connect-src 'self'; frame-ancestors 'none'"));
    }
}

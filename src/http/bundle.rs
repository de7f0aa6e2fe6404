//! A page and the files it loads, compiled into the binary and served by it: GraphiQL and the
//! operators' dashboard are each one bundle. Nothing is read at run time and nothing comes from
//! another origin, so the pages work with no internet access.
//!
//! Each asset is served under a name that carries a hash of its content
//! (`/graphiql/assets/graphiql-<hash>.min.js`), so browsers may keep it for good; the page itself
//! is revalidated. The page template names its assets as `{{file.ext}}`, replaced here by the
//! hashed paths.

use axum::{
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header, uri::Authority},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

pub const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
pub const CSS: &str = "text/css; charset=utf-8";
pub const SVG: &str = "image/svg+xml";
const HTML: &str = "text/html; charset=utf-8";

/// The endpoint the pages' subscriptions use.
const SUBSCRIPTION_PATH: &str = "/graphql/ws";
/// What every page's policy ends with: it may not be framed, and may not send a form anywhere.
const CSP_AFTER_CONNECT: &str = "; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// One file of a bundle: its logical name (as written in the template), content type and content.
pub type Source = (&'static str, &'static str, &'static [u8]);

struct Asset {
    /// The name under the bundle's prefix, with the content hash.
    file: String,
    content_type: &'static str,
    body: &'static [u8],
    etag: HeaderValue,
}

pub struct Bundle {
    assets: Vec<Asset>,
    page: String,
}

impl Bundle {
    /// The bundle of `sources` served under `prefix` (such as `/graphiql/assets/`), and the page
    /// `template` naming them.
    pub fn build(prefix: &str, template: &str, sources: &[Source]) -> Bundle {
        let mut page = template.to_owned();
        let assets = sources
            .iter()
            .map(|&(name, content_type, body)| {
                let hash = hex::encode(&Sha256::digest(body)[..8]);
                let file = match name.split_once('.') {
                    Some((stem, extension)) => format!("{stem}-{hash}.{extension}"),
                    None => format!("{name}-{hash}"),
                };
                page = page.replace(&format!("{{{{{name}}}}}"), &format!("{prefix}{file}"));
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

    /// The page, revalidated on every visit, under `policy` and headers that keep it from being
    /// framed, sniffed or named in a referrer.
    pub fn page(&self, policy: &str) -> Response {
        let mut response = self.page.clone().into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HTML));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if let Ok(policy) = HeaderValue::from_str(policy) {
            headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        }
        response
    }

    /// An asset by its hashed name; `304` when the browser has it, `404` for any other name.
    pub fn asset(&self, file: &str, headers: &HeaderMap) -> Response {
        let Some(asset) = self.assets.iter().find(|asset| asset.file == file) else {
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

    /// Checks the bundle as its module builds it: every placeholder replaced, every asset named
    /// by the page under a name that carries its content hash.
    #[cfg(test)]
    pub fn assert_complete(&self) {
        assert!(!self.page.contains("{{"), "an unknown asset in the page");
        for asset in &self.assets {
            let path = format!("/{}\"", asset.file);
            assert!(
                self.page.contains(&path),
                "{} is not referenced by the page",
                asset.file
            );
            let hash = asset.etag.to_str().unwrap().trim_matches('"');
            assert_eq!(hash.len(), 16);
            assert!(asset.file.contains(hash));
        }
    }
}

/// A page's policy: `directives` (everything but `connect-src`), then connections back to this
/// server only, then no framing, no `<base>`, no form sent anywhere.
///
/// `connect-src 'self'` covers same-host WebSockets in current browsers; the socket's URL is
/// named as well when the request's host is known, for those that read `'self'` more narrowly.
pub fn content_security_policy(directives: &str, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| is_plain_host(host));
    match host {
        Some(host) => format!(
            "{directives}; connect-src 'self' ws://{host}{SUBSCRIPTION_PATH} \
             wss://{host}{SUBSCRIPTION_PATH}{CSP_AFTER_CONNECT}"
        ),
        None => format!("{directives}; connect-src 'self'{CSP_AFTER_CONNECT}"),
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
    fn every_placeholder_names_an_asset_with_its_hash() {
        let sources: &[Source] = &[
            ("app.min.js", JAVASCRIPT, b"one"),
            ("page.css", CSS, b"two"),
        ];
        let bundle = Bundle::build(
            "/x/assets/",
            "<script src=\"{{app.min.js}}\"></script><link href=\"{{page.css}}\">",
            sources,
        );
        bundle.assert_complete();
        assert!(
            bundle
                .assets
                .iter()
                .any(|asset| asset.file.starts_with("app-") && asset.file.ends_with(".min.js"))
        );
    }

    #[test]
    fn the_policy_names_the_socket_only_for_a_plain_host() {
        let directives = "default-src 'none'; script-src 'self'";
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        let policy = content_security_policy(directives, &headers);
        assert!(policy.contains("connect-src 'self' ws://127.0.0.1:8000/graphql/ws wss://"));
        assert!(policy.starts_with("default-src 'none'; script-src 'self';"));

        headers.insert(header::HOST, HeaderValue::from_static("evil; script-src *"));
        let policy = content_security_policy(directives, &headers);
        assert!(!policy.contains("evil"));
        assert!(policy.contains("connect-src 'self'; frame-ancestors 'none'"));
    }
}

//! GraphiQL is served whole by the binary: the page and everything it loads come from this
//! server, under a strict Content-Security-Policy, so it works with no internet access.

use reqwest::{StatusCode, header};
use serde_json::json;

use crate::helpers::{TestApp, WsClient};

/// The directives GraphiQL's policy must hold, each exactly as written.
const POLICY: &[&str] = &[
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
];

pub(crate) async fn get_page(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, String) {
    let response = app
        .http
        .get(app.url(path))
        .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let headers = response.headers().clone();
    (headers, response.text().await.unwrap())
}

pub(crate) fn header_text<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// The page is HTML, not sniffed, under a policy with every one of `policy_directives`,
/// connections only back to this server and its socket, and no script but the server's files.
pub(crate) fn assert_strict_page(
    headers: &reqwest::header::HeaderMap,
    app: &TestApp,
    policy_directives: &[&str],
) {
    assert!(header_text(headers, "content-type").starts_with("text/html"));
    assert_eq!(header_text(headers, "x-content-type-options"), "nosniff");
    let policy = header_text(headers, "content-security-policy");
    let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
    for wanted in policy_directives {
        assert!(
            directives.contains(wanted),
            "{wanted:?} missing from {policy}"
        );
    }
    let connect = directives
        .iter()
        .find(|directive| directive.starts_with("connect-src "))
        .unwrap_or_else(|| panic!("no connect-src in {policy}"));
    let sources: Vec<&str> = connect.split_whitespace().skip(1).collect();
    assert_eq!(
        sources,
        [
            "'self'".to_owned(),
            format!("ws://{}/graphql/ws", app.address),
            format!("wss://{}/graphql/ws", app.address),
        ]
    );
    // Nothing may run that the server did not send as a file.
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    let script = directives
        .iter()
        .find(|directive| directive.starts_with("script-src"))
        .unwrap();
    assert_eq!(*script, "script-src 'self'");
}

/// Every `name="value"` attribute of every tag (the page's own template quotes its values).
pub(crate) fn attributes(html: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        let mut rest = tag;
        while let Some(equals) = rest.find('=') {
            let name = rest[..equals]
                .rsplit(|c: char| c.is_whitespace())
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let after = rest[equals + 1..].trim_start();
            let (value, remainder) = match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let body = &after[1..];
                    let end = body.find(quote).expect("a closed attribute value");
                    (&body[..end], &body[end + 1..])
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    (&after[..end], &after[end..])
                }
            };
            found.push((name, value.to_owned()));
            rest = remainder;
        }
    }
    found
}

/// A path on this server: not absolute (`scheme:`), not protocol-relative (`//host`).
pub(crate) fn assert_same_origin_path(what: &str, value: &str) {
    assert!(
        value.starts_with('/') && !value.starts_with("//") && !value.contains(':'),
        "{what} {value:?} is not a path on this server"
    );
}

#[tokio::test]
async fn graphiql_page_is_served_with_a_strict_policy() {
    let app = TestApp::spawn().await;

    let (headers, page) = get_page(&app, "/graphiql").await;
    assert_strict_page(&headers, &app, POLICY);
    assert!(page.contains(r#"<div id="graphiql""#), "{page}");
    assert!(!page.contains("unpkg"), "{page}");

    // A browser at /graphql gets the same page, under the same policy.
    let (headers, from_graphql) = get_page(&app, "/graphql").await;
    assert_strict_page(&headers, &app, POLICY);
    assert_eq!(from_graphql, page);

    // Other clients keep GraphQL over GET there.
    let response = app
        .http
        .get(app.url("/graphql?query=%7B__typename%7D"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"]["__typename"], "Query");
}

#[tokio::test]
async fn graphiql_loads_only_assets_of_this_server() {
    let app = TestApp::spawn().await;
    let (_, page) = get_page(&app, "/graphiql").await;

    let references = assert_page_loads_only_its_own_files(&app, &page).await;
    let count = |kind: &str| {
        references
            .iter()
            .filter(|path| kind_of(path) == kind)
            .count()
    };
    assert!(
        count("text/javascript") >= 4,
        "react, react-dom, graphiql, start-up: {references:?}"
    );
    assert!(
        count("text/css") >= 2,
        "graphiql's and the page's: {references:?}"
    );

    // The start-up script is the project's own: it names no URL at all, only reads the page's.
    let start = references
        .iter()
        .find(|path| path.contains("/start-"))
        .expect("the start-up script is a file");
    let start = app
        .http
        .get(app.url(start))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for external in ["http://", "https://", "'//", "\"//", "`//", "import("] {
        assert!(
            !start.contains(external),
            "{external:?} in the start-up script"
        );
    }
    assert!(start.contains("dataset.endpoint"));
}

/// The content type a page's file of this name must be served with.
pub(crate) fn kind_of(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("svg") => "image/svg+xml",
        _ => panic!("the page references {path}, of no known kind"),
    }
}

/// Checks that `page` has no inline script or style and names only files of this server, each
/// served with its content type, `nosniff`, for good under its hashed name, and loading nothing
/// from elsewhere; answers the paths the page names.
pub(crate) async fn assert_page_loads_only_its_own_files(app: &TestApp, page: &str) -> Vec<String> {
    // No absolute or protocol-relative URL anywhere in the page, and no inline script or style.
    for external in ["http:", "https:", "\"//", "'//", "url("] {
        assert!(
            !page.contains(external),
            "{external:?} in the page:\n{page}"
        );
    }
    for script in page.split("<script").skip(1) {
        let (open, body) = script.split_once('>').unwrap();
        assert!(open.contains("src="), "an inline script: <script{script}");
        assert!(
            body.starts_with("</script>"),
            "a script with a body: <script{script}"
        );
    }
    assert!(!page.contains("<style"), "an inline style element:\n{page}");
    assert!(
        !attributes(page)
            .iter()
            .any(|(name, _)| name == "style" || name.starts_with("on")),
        "an inline style or event handler attribute:\n{page}"
    );

    let mut references = Vec::new();
    for (name, value) in attributes(page) {
        match name.as_str() {
            "src" | "href" => references.push(value),
            "data-endpoint" | "data-subscription-endpoint" => {
                assert_same_origin_path(&name, &value)
            }
            _ => {}
        }
    }
    for path in &references {
        assert_same_origin_path("a page reference", path);
        let kind = kind_of(path);
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let headers = response.headers().clone();
        assert!(
            header_text(&headers, "content-type").starts_with(kind),
            "{path}: {:?}",
            headers.get("content-type")
        );
        assert_eq!(header_text(&headers, "x-content-type-options"), "nosniff");
        let cache = header_text(&headers, "cache-control");
        assert!(
            cache.contains("immutable") && cache.contains("max-age=31536000"),
            "{path}: {cache}"
        );
        let etag = header_text(&headers, "etag").to_owned();
        let body = response.text().await.unwrap();
        assert!(body.len() > 100, "{path} is empty");

        match kind {
            "text/css" => assert_css_loads_nothing_from_outside(path, &body),
            "text/javascript" => assert_script_loads_nothing_from_outside(path, &body),
            _ => {
                // An image with nothing to run and nothing to fetch.
                for active in [
                    "<script",
                    "href=",
                    "<image",
                    "<foreignObject",
                    "@import",
                    "url(",
                ] {
                    assert!(!body.contains(active), "{active:?} in {path}");
                }
            }
        }

        // The name carries the content's hash: a browser that has it is told so.
        let again = app
            .http
            .get(app.url(path))
            .header(header::IF_NONE_MATCH, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }

    references
}

/// Stylesheets load through `@import` and `url(...)`: none may leave the server (`data:` is
/// inline).
pub(crate) fn assert_css_loads_nothing_from_outside(path: &str, css: &str) {
    assert!(
        !css.contains("@import"),
        "{path} imports another stylesheet"
    );
    for (index, _) in css.match_indices("url(") {
        let target = css[index + 4..]
            .trim_start()
            .trim_start_matches(['"', '\'']);
        let target = &target[..target.find([')', '"', '\'']).unwrap_or(target.len())];
        if target.starts_with("data:") || target.starts_with('#') {
            continue;
        }
        assert_same_origin_path(&format!("url() in {path}"), target);
    }
}

/// Scripts carry URLs in messages and documentation, which is harmless; what would load from
/// elsewhere is a script or stylesheet tag written with an absolute address, `importScripts`,
/// an `import()` of a URL, or a CDN host.
pub(crate) fn assert_script_loads_nothing_from_outside(path: &str, script: &str) {
    let script = script.replace(['\\', '\''], "\"");
    for pattern in [
        "src=\"http",
        "src=\"//",
        "href=\"http",
        "href=\"//",
        "importScripts(",
        "import(\"http",
        "import(\"//",
        "@import url(http",
        "sourceMappingURL=http",
        "//unpkg.com",
        "//cdn.jsdelivr.net",
        "//cdnjs.cloudflare.com",
        "//esm.sh",
        "//fonts.googleapis.com",
    ] {
        assert!(!script.contains(pattern), "{pattern:?} in {path}");
    }
}

#[tokio::test]
async fn graphiql_assets_answer_only_by_their_hashed_names() {
    let app = TestApp::spawn().await;
    for path in [
        "/graphiql/assets/graphiql.min.js",
        "/graphiql/assets/start.js",
        "/graphiql/assets/react-0000000000000000.production.min.js",
        "/graphiql/assets/..%2F..%2FCargo.toml",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
    }
}

#[tokio::test]
async fn graphiql_endpoints_from_the_page_answer() {
    let app = TestApp::spawn().await;
    let (_, page) = get_page(&app, "/graphiql").await;
    let attribute = |wanted: &str| {
        attributes(&page)
            .into_iter()
            .find(|(name, _)| name == wanted)
            .unwrap_or_else(|| panic!("no {wanted} in the page"))
            .1
    };

    // What GraphiQL's fetcher sends first: the introspection query, over HTTP.
    let endpoint = attribute("data-endpoint");
    let response = app
        .http
        .post(app.url(&endpoint))
        .json(&json!({
            "query": "query IntrospectionQuery { __schema { queryType { name } subscriptionType { name } } }",
            "operationName": "IntrospectionQuery",
        }))
        .header(header::ACCEPT, "application/graphql-response+json, application/json, multipart/mixed")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    assert_eq!(
        body["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );

    // Subscriptions: the page's socket, from the page's own origin.
    let socket = attribute("data-subscription-endpoint");
    let mut client = WsClient::connect(
        &format!("ws://{}{socket}", app.address),
        Some(&format!("http://{}", app.address)),
    )
    .await;
    assert_eq!(client.init(None).await.message()["type"], "connection_ack");
}

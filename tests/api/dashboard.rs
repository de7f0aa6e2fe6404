//! The operators' dashboard at `/dashboard`: served whole by the binary under a strict policy,
//! and used in a real browser (headless Chromium driven through chromedriver).
//!
//! The browser test needs `chromium` and `chromedriver` (`apt-get install chromium
//! chromium-driver`, or `CHROMIUM=/path` and `CHROMEDRIVER=/path`), so it is ignored by default:
//! `cargo test --test api dashboard -- --ignored`. Asked to run without them, it fails.

use std::{
    future::Future,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    graphiql::{assert_page_loads_only_its_own_files, assert_strict_page, get_page},
    helpers::{OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp, free_port, tenant_input},
    webhooks::{Receiver, app_allowing_loopback, create_webhook},
};

const NEEDS_CHROMIUM: &str = "needs chromium and chromedriver (apt-get install chromium \
     chromium-driver): cargo test --test api dashboard -- --ignored";

/// The directives of the dashboard's policy, each exactly as written: unlike GraphiQL's, no
/// inline style either.
const POLICY: &[&str] = &[
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
];

/// What the page's own script must never call: each would let data become markup or code.
const MARKUP_SINKS: &[&str] = &[
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    "createContextualFragment",
    "DOMParser",
];

/// How long the browser may take to show what the test waits for (a deadline, not a measure).
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn dashboard_page_and_assets_are_served_with_a_strict_policy() {
    let app = TestApp::spawn().await;
    let (headers, page) = get_page(&app, "/dashboard").await;
    assert_strict_page(&headers, &app, POLICY);
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(page.contains(r#"id="login-form""#), "{page}");

    let references = assert_page_loads_only_its_own_files(&app, &page).await;
    let script = references
        .iter()
        .find(|path| path.starts_with("/dashboard/assets/dashboard-") && path.ends_with(".js"))
        .unwrap_or_else(|| panic!("no dashboard script in {references:?}"));
    assert!(
        references
            .iter()
            .any(|path| path.starts_with("/dashboard/assets/dashboard-") && path.ends_with(".css")),
        "no dashboard stylesheet in {references:?}"
    );
    let script = app
        .http
        .get(app.url(script))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for sink in MARKUP_SINKS {
        assert!(!script.contains(sink), "{sink} in the dashboard's script");
    }
    // The endpoints come from the page; the token is kept by the tab, not by the page.
    assert!(script.contains("dataset.endpoint") && script.contains("sessionStorage"));

    for path in [
        "/dashboard/assets/dashboard.js",
        "/dashboard/assets/dashboard-0000000000000000.js",
        "/dashboard/assets/..%2F..%2FCargo.toml",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "GET {path}");
    }
}

/// An operator signs in, sees the registry (a hostile name as plain text), a tenant made
/// meanwhile, a batch's progress bar fill up to 100 % from the progress subscription, the
/// revision chart count every tenant, a batch started elsewhere listed and filled, and a webhook
/// delivery with its status and attempts.
#[tokio::test]
#[ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver): cargo test --test api dashboard -- --ignored"]
async fn dashboard_in_a_browser_follows_tenants_and_a_batch() {
    let app = app_allowing_loopback().await;
    let operator = app.operator_token().await;
    let hostile_name = r#"<img src=x onerror="document.title='owned'">"#;
    let mut hostile = tenant_input("hostile.example");
    hostile["tenantName"] = json!(hostile_name);
    app.create_tenant(&operator, hostile).await;

    let (headers, _) = get_page(&app, "/dashboard").await;
    assert_strict_page(&headers, &app, POLICY);

    let browser = Browser::start().await;
    let page = &browser.client;
    page.goto(&app.url("/dashboard")).await.unwrap();
    type_into(page, "login-email", OPERATOR_EMAIL).await;
    type_into(page, "login-password", OPERATOR_PASSWORD).await;
    click(page, "login-submit").await;
    eventually("the operator signed in", || async {
        let shown = page.find(Locator::Id("account-email")).await.ok()?;
        (shown.text().await.ok()? == OPERATOR_EMAIL).then_some(())
    })
    .await;
    // The token is the tab's, not the page's.
    let stored = page
        .execute(
            "return sessionStorage.getItem('tenantgraph.dashboard.token')",
            vec![],
        )
        .await
        .unwrap();
    assert!(stored.as_str().is_some_and(|token| !token.is_empty()));
    assert!(
        !page
            .source()
            .await
            .unwrap()
            .contains(stored.as_str().unwrap())
    );

    // The hostile name is text: shown as written, no element made of it, nothing run.
    eventually("the hostile tenant in the table", || async {
        tenant_names(page)
            .await?
            .iter()
            .any(|name| name == hostile_name)
            .then_some(())
    })
    .await;
    assert!(
        page.find_all(Locator::Css("main img"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(page.title().await.unwrap(), "tenantgraph · operators");
    // The policy is in force: a script the page did not load as a file does not run.
    let inline_ran = page
        .execute(
            "const s = document.createElement('script'); s.textContent = 'window.inlineRan = true'; \
             document.head.append(s); return window.inlineRan === true;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(inline_ran, json!(false));

    // A tenant made elsewhere shows after a refresh.
    app.create_tenant(&operator, tenant_input("later.example"))
        .await;
    click(page, "tenants-refresh").await;
    eventually("the new tenant in the table", || async {
        tenant_domains(page)
            .await?
            .iter()
            .any(|domain| domain == "later.example")
            .then_some(())
    })
    .await;

    // A batch of three, followed live until its bar is full.
    let batch: Vec<Value> = ["one.example", "two.example", "three.example"]
        .into_iter()
        .map(tenant_input)
        .collect();
    type_into(page, "batch-tenants", &Value::from(batch).to_string()).await;
    click(page, "batch-submit").await;
    let (value, max, label) = full_bar(
        page,
        "#batches li.batch[data-status='SUCCEEDED']",
        "the batch's bar at 100 %",
    )
    .await;
    assert_eq!((value.as_str(), max.as_str()), ("3", "3"));
    assert!(label.starts_with("100 %"), "{label}");
    let batch_id = page
        .find(Locator::Css("#batches li.batch"))
        .await
        .unwrap()
        .attr("data-batch-id")
        .await
        .unwrap()
        .expect("the card names its batch");
    let stored = app
        .graphql(
            "query($id: ID!) { provisioningBatch(id: $id) { status summary { successful } } }",
            json!({ "id": batch_id }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        stored.data()["provisioningBatch"],
        json!({ "status": "SUCCEEDED", "summary": { "successful": 3 } })
    );

    // The finished batch refreshed the table and the chart: five tenants, all at one revision.
    eventually("the batch's tenants in the table", || async {
        let domains = tenant_domains(page).await?;
        ["one.example", "two.example", "three.example"]
            .iter()
            .all(|wanted| domains.iter().any(|domain| domain == wanted))
            .then_some(())
    })
    .await;
    let head = app.scalar("SELECT count(*) FROM public.tenants").await;
    assert_eq!(head, 5);
    eventually("every tenant in the revision chart", || async {
        let bars = page
            .find_all(Locator::Css("#revisions-chart g.revision-bar"))
            .await
            .ok()?;
        let mut counted = 0;
        for bar in &bars {
            counted += bar.attr("data-count").await.ok()??.parse::<i64>().ok()?;
        }
        (bars.len() == 1 && counted == 5).then_some(())
    })
    .await;

    // A batch started over GraphQL, not from the page, is listed and its bar fills.
    let elsewhere = app
        .graphql(
            "mutation($tenants: [CreateTenantInput!]!) { provisionTenants(tenants: $tenants) { id } }",
            json!({ "tenants": [tenant_input("four.example"), tenant_input("five.example")] }),
            Some(&operator),
        )
        .await;
    let elsewhere = elsewhere.data()["provisionTenants"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    click(page, "batches-refresh").await;
    let card = format!("#batches li.batch[data-batch-id='{elsewhere}'][data-status='SUCCEEDED']");
    let (value, max, label) = full_bar(page, &card, "the other batch's bar at 100 %").await;
    assert_eq!((value.as_str(), max.as_str()), ("2", "2"));
    assert!(label.starts_with("100 %"), "{label}");
    // Newest first: the other batch above the page's own.
    let listed = page
        .find(Locator::Css("#batches li.batch"))
        .await
        .unwrap()
        .attr("data-batch-id")
        .await
        .unwrap();
    assert_eq!(listed.as_deref(), Some(elsewhere.as_str()));

    // A webhook whose receiver fails once: its delivery shows delivered on the second attempt.
    let receiver = Receiver::start_on("127.0.0.1:0".parse().unwrap(), 1).await;
    let webhook = create_webhook(&app, &operator, &receiver.url(), &["tenant.created"]).await;
    let webhook_id = webhook["id"].as_str().unwrap();
    app.create_tenant(&operator, tenant_input("hooked.example"))
        .await;
    receiver.wait_for(2).await;
    eventually("the delivery recorded as delivered", || async {
        let delivered = app
            .scalar("SELECT count(*) FROM public.webhook_deliveries WHERE status = 'DELIVERED'")
            .await;
        (delivered == 1).then_some(())
    })
    .await;
    click(page, "webhooks-refresh").await;
    let row = format!("#webhooks article.webhook[data-webhook-id='{webhook_id}'] tbody tr");
    let shown = eventually("the delivery in the webhooks section", || async {
        let row = page.find(Locator::Css(&row)).await.ok()?;
        let mut cells = Vec::new();
        for class in [
            "delivery-event",
            "delivery-status",
            "delivery-attempts",
            "delivery-http-status",
        ] {
            let cell = row.find(Locator::Css(&format!("td.{class}"))).await.ok()?;
            cells.push(cell.text().await.ok()?);
        }
        Some(cells)
    })
    .await;
    assert_eq!(shown, ["tenant.created", "delivered", "2", "204"]);
    let status = page.find(Locator::Id("webhooks-status")).await.unwrap();
    assert_eq!(
        status.attr("data-state").await.unwrap().as_deref(),
        Some("ok")
    );

    // Signing out forgets the token.
    click(page, "sign-out").await;
    eventually("the sign-in form again", || async {
        let form = page.find(Locator::Id("sign-in")).await.ok()?;
        form.is_displayed().await.ok()?.then_some(())
    })
    .await;
    let stored = page
        .execute(
            "return sessionStorage.getItem('tenantgraph.dashboard.token')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(stored, Value::Null);

    browser.close().await;
}

async fn tenant_names(page: &Client) -> Option<Vec<String>> {
    column_texts(page, "#tenants td.tenant-name").await
}

async fn tenant_domains(page: &Client) -> Option<Vec<String>> {
    column_texts(page, "#tenants td.tenant-domain").await
}

/// The text of every cell `selector` finds; `None` while the table is being redrawn.
async fn column_texts(page: &Client, selector: &str) -> Option<Vec<String>> {
    let mut texts = Vec::new();
    for cell in page.find_all(Locator::Css(selector)).await.ok()? {
        texts.push(cell.text().await.ok()?);
    }
    Some(texts)
}

/// Types `text` into the element with id `id`.
async fn type_into(page: &Client, id: &str, text: &str) {
    page.find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element with id `id`.
async fn click(page: &Client, id: &str) {
    page.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits for the batch card `card` (a CSS selector) to show a full bar: its value, its maximum
/// and its label.
async fn full_bar(page: &Client, card: &str, what: &str) -> (String, String, String) {
    eventually(what, || async {
        let card = page.find(Locator::Css(card)).await.ok()?;
        let bar = card.find(Locator::Css("progress")).await.ok()?;
        let value = bar.attr("value").await.ok()??;
        let max = bar.attr("max").await.ok()??;
        let label = card
            .find(Locator::Css(".percent"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (value == max).then_some((value, max, label))
    })
    .await
}

/// Asks `probe` again until it answers, for at most [`PATIENCE`].
async fn eventually<T, Probe, Answer>(what: &str, mut probe: Probe) -> T
where
    Probe: FnMut() -> Answer,
    Answer: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never saw {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A headless Chromium session through its own `chromedriver`.
struct Browser {
    client: Client,
    // Dropped after the client: stops whatever the session left running.
    _driver: Driver,
}

/// `chromedriver` on a free loopback port, in a process group of its own so that the browsers it
/// starts go with it, and a fresh profile directory; all stopped and removed when dropped, even
/// when the test fails before a session opens.
struct Driver {
    process: Child,
    profile: PathBuf,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let process = Command::new(binary("CHROMEDRIVER", "chromedriver"))
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("chromedriver does not start ({err}); {NEEDS_CHROMIUM}"));
        let profile =
            std::env::temp_dir().join(format!("tenantgraph-chromium-{}", uuid::Uuid::new_v4()));
        let driver = Driver {
            process,
            profile,
            url: format!("http://127.0.0.1:{port}"),
        };
        std::fs::create_dir(&driver.profile).unwrap();
        eventually("chromedriver answering", || async {
            let status = reqwest::get(format!("{}/status", driver.url)).await.ok()?;
            status.status().is_success().then_some(())
        })
        .await;
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(group) = i32::try_from(self.process.id()) {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    async fn start() -> Browser {
        let driver = Driver::start().await;
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": binary("CHROMIUM", "chromium"),
                "args": [
                    "--headless=new",
                    // Root (as in CI) has no sandbox; the profile is fresh and temporary.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--user-data-dir={}", driver.profile.display()),
                    // Everything stays on this machine: no proxy, no name resolved, no
                    // background traffic of the browser's own.
                    "--no-proxy-server",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-default-apps",
                    "--disable-extensions",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--no-pings",
                ],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        // Plain HTTP: the driver listens on loopback only, so the client needs no TLS at all.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|err| panic!("no browser session ({err}); {NEEDS_CHROMIUM}"));
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Ends the session (the browser quits); the driver and the profile go with `Drop`.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// The program named by the environment variable `variable`, else `name` on the `PATH`.
fn binary(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed; {NEEDS_CHROMIUM}"))
}

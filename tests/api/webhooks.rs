//! Webhooks: signed deliveries of tenant life-cycle events from the outbox, retried until a
//! receiver takes them, never to internal addresses unless allowed. Receivers are local axum
//! servers on loopback, allowed through `WEBHOOK_ALLOWED_HOSTS=127.0.0.1`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use hmac::{Hmac, Mac};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{CREATE_TENANT, TestApp, free_port, tenant_input};

const SECRET: &str = "a-webhook-secret-of-some-length";
const ALL_EVENTS: [&str; 8] = [
    "tenant.created",
    "tenant.provisioned",
    "tenant.failed",
    "tenant.updated",
    "tenant.deactivated",
    "tenant.deleted",
    "tenant.migrated",
    "batch.finished",
];
const CREATE_WEBHOOK: &str = "mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { id url events description createdAt } }";
const WEBHOOKS: &str = "{ webhooks { id url events deliveries { id event status attempts lastStatusCode createdAt deliveredAt } } }";

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Received>>,
    /// Requests still to answer with 500 before answering 204.
    failures_left: AtomicUsize,
}

/// A webhook receiver on loopback: records every request and answers 500 while it is told to
/// fail, then 204.
pub(crate) struct Receiver {
    address: SocketAddr,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), 0).await
    }

    pub(crate) async fn start_on(address: SocketAddr, failures: usize) -> Receiver {
        let inbox = Arc::new(Inbox {
            failures_left: AtomicUsize::new(failures),
            ..Default::default()
        });
        async fn receive(
            State(inbox): State<Arc<Inbox>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            inbox
                .received
                .lock()
                .unwrap()
                .push(Received { headers, body });
            let failing = inbox
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok();
            if failing {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::NO_CONTENT
            }
        }
        let router = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver {
            address,
            inbox,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    fn received(&self) -> Vec<Received> {
        self.inbox.received.lock().unwrap().clone()
    }

    /// The events received so far, by name, in arrival order.
    fn events(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| r.json()["event"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until `count` requests arrived.
    pub(crate) async fn wait_for(&self, count: usize) -> Vec<Received> {
        wait_until(&format!("{count} requests"), || async {
            self.received().len() >= count
        })
        .await;
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `done` until it holds; fails after 30 s.
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An app whose webhooks may reach 127.0.0.1 and that retries after 100 ms, 200 ms, ...
pub(crate) async fn app_allowing_loopback() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_ALLOWED_HOSTS".into(), "127.0.0.1".into());
        env.insert("WEBHOOK_RETRY_BASE_MS".into(), "100".into());
        env.insert("WEBHOOK_RETRY_MAX_SECONDS".into(), "1".into());
    })
    .await
}

pub(crate) async fn create_webhook(
    app: &TestApp,
    token: &str,
    url: &str,
    events: &[&str],
) -> Value {
    app.graphql(
        CREATE_WEBHOOK,
        json!({ "input": { "url": url, "events": events, "secret": SECRET, "description": "tests" } }),
        Some(token),
    )
    .await
    .data()["createWebhook"]
        .clone()
}

/// The outbox rows of `event`.
async fn queued(app: &TestApp, event: &str) -> i64 {
    app.scalar(&format!(
        "SELECT count(*) FROM public.webhook_deliveries WHERE event = '{event}'"
    ))
    .await
}

fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn deliveries_are_signed_posts_with_the_event_headers() {
    let app = app_allowing_loopback().await;
    let receiver = Receiver::start().await;
    let token = app.operator_token().await;
    let webhook = create_webhook(
        &app,
        &token,
        &receiver.url(),
        &["tenant.created", "tenant.provisioned"],
    )
    .await;
    assert_eq!(webhook["url"], receiver.url());
    assert_eq!(
        webhook["events"],
        json!(["tenant.created", "tenant.provisioned"])
    );
    assert_eq!(webhook["description"], "tests");

    let created = app.create_tenant(&token, tenant_input("signed.org")).await;
    let tenant_id = created["tenant"]["id"].as_str().unwrap();
    let received = receiver.wait_for(2).await;
    let mut events = receiver.events();
    events.sort();
    assert_eq!(events, ["tenant.created", "tenant.provisioned"]);

    for request in &received {
        let body = request.json();
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("x-tenantgraph-event"), body["event"]);
        assert_eq!(request.header("x-tenantgraph-delivery"), body["id"]);
        let timestamp = request.header("x-tenantgraph-timestamp");
        let sent_at: i64 = timestamp.parse().expect("Unix seconds");
        assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 300);
        assert_eq!(
            request.header("x-tenantgraph-signature"),
            sign(timestamp, &request.body),
            "the signature is the HMAC of <timestamp>.<body>"
        );
        assert_ne!(
            request.header("x-tenantgraph-signature"),
            sign("0", &request.body),
            "the timestamp is part of what is signed"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(body["occurredAt"].as_str().unwrap()).is_ok(),
            "{body}"
        );
        assert_eq!(body["data"]["tenantId"], tenant_id);
        assert_eq!(body["data"]["domain"], "signed.org");
        assert_eq!(body["data"]["schemaName"], "tenant_signed_org");
    }
    let provisioned = received
        .iter()
        .map(Received::json)
        .find(|body| body["event"] == "tenant.provisioned")
        .unwrap();
    assert_eq!(provisioned["data"]["status"], "ACTIVE");

    // Visible to operators with their attempts.
    wait_until("both deliveries recorded as delivered", || async {
        app.scalar("SELECT count(*) FROM public.webhook_deliveries WHERE status = 'DELIVERED'")
            .await
            == 2
    })
    .await;
    let listed = app.graphql(WEBHOOKS, json!({}), Some(&token)).await;
    let deliveries = &listed.data()["webhooks"][0]["deliveries"];
    assert_eq!(deliveries.as_array().unwrap().len(), 2);
    for delivery in deliveries.as_array().unwrap() {
        assert_eq!(delivery["status"], "DELIVERED");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["lastStatusCode"], 204);
        assert!(delivery["deliveredAt"].is_string());
    }
}

#[tokio::test]
async fn every_life_cycle_change_announces_its_event() {
    let app = app_allowing_loopback().await;
    let receiver = Receiver::start().await;
    let token = app.operator_token().await;
    create_webhook(&app, &token, &receiver.url(), &ALL_EVENTS).await;

    let created = app.create_tenant(&token, tenant_input("cycle.org")).await;
    let id = created["tenant"]["id"].as_str().unwrap().to_owned();
    receiver.wait_for(2).await;

    // One change of the tenant, which must succeed.
    let change = |mutation: &'static str| {
        let (app, token, id) = (&app, &token, &id);
        async move {
            app.graphql(mutation, json!({ "id": id }), Some(token))
                .await
                .data()
                .clone()
        }
    };
    let updated = change(
        "mutation($id: ID!) { updateTenant(id: $id, input: { tenantName: \"Renamed\" }) { tenantName } }",
    )
    .await;
    assert_eq!(updated["updateTenant"]["tenantName"], "Renamed");
    receiver.wait_for(3).await;
    change("mutation($id: ID!) { runMigrations(tenantId: $id) { currentRevision } }").await;
    receiver.wait_for(4).await;
    let batch = change(
        "mutation($id: ID!) { migrateTenants(tenantIds: [$id], options: { wait: true }) { status } }",
    )
    .await;
    assert_eq!(batch["migrateTenants"]["status"], "SUCCEEDED");
    receiver.wait_for(6).await;
    change("mutation($id: ID!) { deactivateTenant(id: $id) { status } }").await;
    receiver.wait_for(7).await;
    change("mutation($id: ID!) { deleteTenant(id: $id) { tenantId } }").await;
    let received = receiver.wait_for(8).await;

    let mut events = receiver.events();
    // A change's own events commit together; their order among themselves is not promised.
    events[0..2].sort();
    events[4..6].sort();
    assert_eq!(
        events,
        [
            "tenant.created",
            "tenant.provisioned",
            "tenant.updated",
            "tenant.migrated",
            "batch.finished",
            "tenant.migrated",
            "tenant.deactivated",
            "tenant.deleted",
        ]
    );
    let body_of = |event: &str| {
        received
            .iter()
            .map(Received::json)
            .find(|body| body["event"] == event)
            .unwrap()
    };
    assert_eq!(body_of("tenant.updated")["data"]["tenantName"], "Renamed");
    assert_eq!(body_of("tenant.deactivated")["data"]["status"], "INACTIVE");
    assert_eq!(body_of("tenant.deleted")["data"]["tenantId"], id);
    let finished = body_of("batch.finished")["data"].clone();
    assert_eq!(finished["kind"], "MIGRATE");
    assert_eq!(finished["status"], "SUCCEEDED");
    assert_eq!(finished["successful"], 1);
}

#[tokio::test]
async fn a_failed_creation_announces_only_its_failure() {
    let app = app_allowing_loopback().await;
    let receiver = Receiver::start().await;
    let token = app.operator_token().await;
    create_webhook(&app, &token, &receiver.url(), &ALL_EVENTS).await;
    crate::tenants::inject_failure_into_person_migration(&app, "tenant_doomed_org").await;

    let response = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": tenant_input("doomed.org") }),
            Some(&token),
        )
        .await;
    assert_eq!(response.error_code(), "INTERNAL");
    // Refused input makes no tenant and announces nothing.
    let duplicate = app
        .graphql(
            CREATE_TENANT,
            json!({ "input": { "tenantName": "", "domain": "doomed.org", "email": "x" } }),
            Some(&token),
        )
        .await;
    assert_eq!(duplicate.error_code(), "BAD_USER_INPUT");

    let received = receiver.wait_for(1).await;
    let body = received[0].json();
    assert_eq!(body["event"], "tenant.failed");
    assert_eq!(body["data"]["operation"], "tenant.create");
    assert_eq!(body["data"]["code"], "INTERNAL");
    assert!(body["data"]["tenantId"].is_string());
    // The rolled-back tenant was never created or provisioned, as far as the outbox knows.
    assert_eq!(queued(&app, "tenant.created").await, 0);
    assert_eq!(queued(&app, "tenant.provisioned").await, 0);
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.webhook_deliveries")
            .await,
        1
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_its_delivery_once_it_is_up() {
    let app = app_allowing_loopback().await;
    let token = app.operator_token().await;
    let port = free_port();
    create_webhook(
        &app,
        &token,
        &format!("http://127.0.0.1:{port}/hook"),
        &["tenant.created"],
    )
    .await;
    let mut input = tenant_input("patient.org");
    input["provisionSchema"] = json!(false);
    app.create_tenant(&token, input).await;

    wait_until("two failed attempts", || async {
        app.scalar(
            "SELECT count(*) FROM public.webhook_deliveries \
              WHERE status = 'PENDING' AND attempts >= 2 AND last_status_code IS NULL \
                AND last_error IS NOT NULL",
        )
        .await
            == 1
    })
    .await;

    // Up at last, first answering 500 once.
    let receiver = Receiver::start_on(([127, 0, 0, 1], port).into(), 1).await;
    let received = receiver.wait_for(2).await;
    wait_until("the delivery is recorded as delivered", || async {
        app.scalar("SELECT count(*) FROM public.webhook_deliveries WHERE status = 'DELIVERED'")
            .await
            == 1
    })
    .await;
    let ids: Vec<String> = received
        .iter()
        .map(|r| r.header("x-tenantgraph-delivery").to_owned())
        .collect();
    assert_eq!(ids[0], ids[1], "the same delivery, tried again");
    let listed = app.graphql(WEBHOOKS, json!({}), Some(&token)).await;
    let delivery = &listed.data()["webhooks"][0]["deliveries"][0];
    assert_eq!(delivery["status"], "DELIVERED");
    assert!(delivery["attempts"].as_i64().unwrap() >= 4, "{delivery}");
    assert_eq!(delivery["lastStatusCode"], 204);
    assert_eq!(delivery["id"], ids[0].as_str());
}

#[tokio::test]
async fn a_delivery_is_failed_once_its_attempts_run_out() {
    let app = TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_ALLOWED_HOSTS".into(), "127.0.0.1".into());
        env.insert("WEBHOOK_RETRY_BASE_MS".into(), "50".into());
        env.insert("WEBHOOK_MAX_ATTEMPTS".into(), "3".into());
    })
    .await;
    let receiver = Receiver::start_on("127.0.0.1:0".parse().unwrap(), usize::MAX).await;
    let token = app.operator_token().await;
    create_webhook(&app, &token, &receiver.url(), &["tenant.created"]).await;
    let mut input = tenant_input("hopeless.org");
    input["provisionSchema"] = json!(false);
    app.create_tenant(&token, input).await;

    wait_until("the delivery is failed", || async {
        app.scalar("SELECT count(*) FROM public.webhook_deliveries WHERE status = 'FAILED'")
            .await
            == 1
    })
    .await;
    let listed = app.graphql(WEBHOOKS, json!({}), Some(&token)).await;
    let delivery = &listed.data()["webhooks"][0]["deliveries"][0];
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["lastStatusCode"], 500);
    assert!(delivery["deliveredAt"].is_null());
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn two_servers_never_send_the_same_delivery_twice() {
    let a = app_allowing_loopback().await;
    let b = TestApp::spawn_on(&a.database.url, |env| {
        env.insert("WEBHOOK_ALLOWED_HOSTS".into(), "127.0.0.1".into());
    })
    .await;
    let receiver = Receiver::start().await;
    let token = a.operator_token().await;
    create_webhook(&a, &token, &receiver.url(), &["tenant.created"]).await;
    for n in 0..12 {
        let mut input = tenant_input(&format!("pair{n}.org"));
        input["provisionSchema"] = json!(false);
        let app = if n % 2 == 0 { &a } else { &b };
        let token = app.operator_token().await;
        app.create_tenant(&token, input).await;
    }
    wait_until("every delivery delivered", || async {
        a.scalar("SELECT count(*) FROM public.webhook_deliveries WHERE status = 'DELIVERED'")
            .await
            == 12
    })
    .await;
    let mut per_delivery: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        *per_delivery
            .entry(request.header("x-tenantgraph-delivery").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_delivery.len(), 12);
    assert!(
        per_delivery.values().all(|&sent| sent == 1),
        "{per_delivery:?}"
    );
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    for url in [
        "http://127.0.0.1/hook",
        "http://127.0.0.2/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
        "http://LOCALHOST.:8080/",
        "http://hooks.localhost/",
        "http://0.0.0.0/",
    ] {
        let response = app
            .graphql(
                CREATE_WEBHOOK,
                json!({ "input": { "url": url, "events": ["tenant.created"], "secret": SECRET } }),
                Some(&token),
            )
            .await;
        assert_eq!(response.error_code(), "BAD_USER_INPUT", "{url}");
        assert_eq!(response.error_field(), Some("url"), "{url}");
    }
    assert_eq!(app.scalar("SELECT count(*) FROM public.webhooks").await, 0);

    let allowed = TestApp::spawn_with(|env| {
        env.insert("WEBHOOK_ALLOWED_HOSTS".into(), "127.0.0.1, [::1]".into());
    })
    .await;
    let token = allowed.operator_token().await;
    for url in ["http://127.0.0.1:9/hook", "http://[::1]:9/"] {
        create_webhook(&allowed, &token, url, &["tenant.created"]).await;
    }
    // Only the hosts named.
    let refused = allowed
        .graphql(
            CREATE_WEBHOOK,
            json!({ "input": { "url": "http://127.0.0.2/", "events": ["tenant.created"], "secret": SECRET } }),
            Some(&token),
        )
        .await;
    assert_eq!(refused.error_field(), Some("url"));
}

#[tokio::test]
async fn a_stored_url_to_an_internal_address_is_refused_at_send_time() {
    let app = app_allowing_loopback().await;
    // A receiver on a loopback address that is not allowed, stored as a changed allow-list
    // (or a name rebound to it) would leave it: the send checks again.
    let receiver = Receiver::start_on("127.0.0.2:0".parse().unwrap(), 0).await;
    let token = app.operator_token().await;
    let webhook =
        create_webhook(&app, &token, "http://127.0.0.1:9/hook", &["tenant.created"]).await;
    let urls = [
        receiver.url(),
        format!("http://localhost:{}/hook", receiver.address.port()),
    ];
    for (n, url) in urls.into_iter().enumerate() {
        app.db()
            .execute_unprepared(&format!(
                "UPDATE public.webhooks SET url = '{url}' WHERE id = '{}'",
                webhook["id"].as_str().unwrap()
            ))
            .await
            .unwrap();
        let domain = format!("guarded{n}.org");
        let mut input = tenant_input(&domain);
        input["provisionSchema"] = json!(false);
        app.create_tenant(&token, input).await;
        wait_until("a refused attempt", || async {
            app.scalar(&format!(
                "SELECT count(*) FROM public.webhook_deliveries \
                  WHERE data->>'domain' = '{domain}' AND attempts >= 1 \
                    AND last_error LIKE '%private%' AND last_status_code IS NULL"
            ))
            .await
                == 1
        })
        .await;
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn each_invalid_field_is_reported() {
    let app = app_allowing_loopback().await;
    let token = app.operator_token().await;
    let fields_of = |response: &crate::helpers::Gql| -> Vec<String> {
        let mut fields: Vec<String> = response.0["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("errors expected: {}", response.0))
            .iter()
            .map(|error| {
                assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT");
                error["extensions"]["field"].as_str().unwrap().to_owned()
            })
            .collect();
        fields.sort();
        fields
    };
    let response = app
        .graphql(
            CREATE_WEBHOOK,
            json!({ "input": {
                "url": "ftp://127.0.0.1/hook",
                "events": ["tenant.created", "tenant.exploded", "tenant.created"],
                "secret": "short",
                "description": "d".repeat(1001),
            } }),
            Some(&token),
        )
        .await;
    assert_eq!(
        fields_of(&response),
        ["description", "events[1]", "events[2]", "secret", "url"]
    );

    let hook = "http://127.0.0.1:9/hook";
    for (input, field) in [
        (
            json!({ "url": "", "events": ["tenant.created"], "secret": SECRET }),
            "url",
        ),
        (
            json!({ "url": "not a url", "events": ["tenant.created"], "secret": SECRET }),
            "url",
        ),
        (
            json!({ "url": format!("{hook}/{}", "a".repeat(2048)), "events": ["tenant.created"], "secret": SECRET }),
            "url",
        ),
        (
            json!({ "url": "http://user:pw@127.0.0.1:9/hook", "events": ["tenant.created"], "secret": SECRET }),
            "url",
        ),
        (
            json!({ "url": hook, "events": [], "secret": SECRET }),
            "events",
        ),
        (
            json!({ "url": hook, "events": ALL_EVENTS.iter().chain(["batch.finished"].iter()).collect::<Vec<_>>(), "secret": SECRET }),
            "events",
        ),
        (
            json!({ "url": hook, "events": ["tenant.created"], "secret": "s".repeat(257) }),
            "secret",
        ),
    ] {
        let response = app
            .graphql(CREATE_WEBHOOK, json!({ "input": input }), Some(&token))
            .await;
        assert!(
            fields_of(&response).contains(&field.to_owned()),
            "{input}: {}",
            response.0
        );
    }
    assert_eq!(app.scalar("SELECT count(*) FROM public.webhooks").await, 0);
}

#[tokio::test]
async fn only_platform_operators_manage_webhooks() {
    let app = app_allowing_loopback().await;
    let tenant = app.with_tenant("hooked.org").await;
    let input = json!({ "input": { "url": "http://127.0.0.1:9/hook", "events": ["tenant.created"], "secret": SECRET } });
    let delete = "mutation { deleteWebhook(id: \"00000000-0000-0000-0000-000000000000\") }";
    for token in [&tenant.admin, &tenant.member] {
        for (query, variables) in [
            (WEBHOOKS, json!({})),
            (CREATE_WEBHOOK, input.clone()),
            (delete, json!({})),
        ] {
            let response = app.graphql(query, variables, Some(token)).await;
            assert_eq!(response.error_code(), "FORBIDDEN", "{query}");
        }
    }
    let anonymous = app.graphql(CREATE_WEBHOOK, input.clone(), None).await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
    let with_key = app
        .graphql_with_key(WEBHOOKS, json!({}), &tenant.api_key)
        .await;
    assert_eq!(with_key.error_code(), "FORBIDDEN");
    assert_eq!(app.scalar("SELECT count(*) FROM public.webhooks").await, 0);
}

#[tokio::test]
async fn the_secret_is_never_readable_back() {
    let app = app_allowing_loopback().await;
    let token = app.operator_token().await;
    create_webhook(&app, &token, "http://127.0.0.1:9/hook", &["tenant.created"]).await;
    let asked = app
        .graphql("{ webhooks { secret } }", json!({}), Some(&token))
        .await;
    assert!(
        asked.0["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("secret")
    );
    let listed = app.graphql(WEBHOOKS, json!({}), Some(&token)).await;
    assert!(!listed.0.to_string().contains(SECRET));
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.audit_events WHERE action = 'webhook.create' \
               AND detail::text NOT LIKE '%{SECRET}%'"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn deleting_a_webhook_stops_its_deliveries() {
    let app = app_allowing_loopback().await;
    let receiver = Receiver::start().await;
    let token = app.operator_token().await;
    let port = free_port();
    // One webhook whose receiver is down (its delivery stays pending), one that works.
    let down = create_webhook(
        &app,
        &token,
        &format!("http://127.0.0.1:{port}/hook"),
        &["tenant.created"],
    )
    .await;
    let up = create_webhook(&app, &token, &receiver.url(), &["tenant.created"]).await;
    let mut input = tenant_input("before.org");
    input["provisionSchema"] = json!(false);
    app.create_tenant(&token, input).await;
    receiver.wait_for(1).await;

    for webhook in [&down, &up] {
        let deleted = app
            .graphql(
                "mutation($id: ID!) { deleteWebhook(id: $id) }",
                json!({ "id": webhook["id"] }),
                Some(&token),
            )
            .await;
        assert_eq!(deleted.data()["deleteWebhook"], true);
    }
    // The pending delivery went with its webhook, and a new change queues nothing.
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.webhook_deliveries")
            .await,
        0
    );
    let mut input = tenant_input("after.org");
    input["provisionSchema"] = json!(false);
    app.create_tenant(&token, input).await;
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.webhook_deliveries")
            .await,
        0
    );
    assert_eq!(receiver.received().len(), 1);

    let again = app
        .graphql(
            "mutation($id: ID!) { deleteWebhook(id: $id) }",
            json!({ "id": up["id"] }),
            Some(&token),
        )
        .await;
    assert_eq!(again.error_code(), "NOT_FOUND");
    let listed = app.graphql(WEBHOOKS, json!({}), Some(&token)).await;
    assert_eq!(listed.data()["webhooks"], json!([]));
}

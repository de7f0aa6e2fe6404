//! Batch provisioning, fleet migrations and live progress.

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::helpers::{Gql, TestApp, WsEvent, tenant_input};

pub const PROVISION: &str = r#"
mutation($tenants: [CreateTenantInput!]!, $options: BatchOptions) {
  provisionTenants(tenants: $tenants, options: $options) {
    id kind status
    results { tenantName domain schemaName status tenantId apiKey error { code message } attempts durationMs }
    summary { totalRequested successful failed processingTimeMs }
  }
}"#;

pub const MIGRATE: &str = r#"
mutation($target: String!, $ids: [ID!], $options: BatchOptions, $confirm: String) {
  migrateTenants(targetRevision: $target, tenantIds: $ids, options: $options, confirm: $confirm) {
    id kind status results { domain status error { code } } summary { totalRequested successful failed }
  }
}"#;

pub fn inputs(prefix: &str, count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| tenant_input(&format!("{prefix}-{i}")))
        .collect()
}

pub async fn provision(app: &TestApp, token: &str, tenants: Vec<Value>, options: Value) -> Gql {
    app.graphql(
        PROVISION,
        json!({ "tenants": tenants, "options": options }),
        Some(token),
    )
    .await
}

/// The most jobs of the batch that ever ran at the same moment.
async fn peak_concurrency(app: &TestApp, batch_id: &str) -> i64 {
    app.scalar(&format!(
            "SELECT max(running)::bigint FROM ( \
               SELECT sum(delta) OVER (ORDER BY at, delta) AS running FROM ( \
                 SELECT started_at AS at, 1 AS delta FROM public.provisioning_jobs WHERE batch_id = '{batch_id}' \
                 UNION ALL \
                 SELECT finished_at, -1 FROM public.provisioning_jobs WHERE batch_id = '{batch_id}') edges) peaks"
        ),
    )
    .await
}

#[tokio::test]
async fn a_batch_of_twenty_provisions_every_tenant_within_its_concurrency() {
    twenty_tenants_provisioned_within_the_concurrency(&TestApp::spawn().await).await;
}

/// `provisionTenants` of twenty, five at a time: every tenant made, the keys shown once.
pub async fn twenty_tenants_provisioned_within_the_concurrency(app: &TestApp) {
    let token = app.operator_token().await;
    let response = provision(
        app,
        &token,
        inputs("twenty", 20),
        json!({ "maxConcurrency": 5, "wait": true }),
    )
    .await;
    let batch = &response.data()["provisionTenants"];
    assert_eq!(batch["status"], "SUCCEEDED");
    assert_eq!(batch["kind"], "PROVISION");
    assert_eq!(batch["summary"]["totalRequested"], 20);
    assert_eq!(batch["summary"]["successful"], 20);
    assert_eq!(batch["summary"]["failed"], 0);
    for result in batch["results"].as_array().unwrap() {
        assert_eq!(result["status"], "SUCCEEDED", "{result}");
        assert!(result["apiKey"].as_str().unwrap().starts_with("tk_"));
        assert!(result["tenantId"].is_string());
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE status = 'ACTIVE'")
            .await,
        20
    );
    let id = batch["id"].as_str().unwrap();
    let peak = peak_concurrency(app, id).await;
    assert!((1..=5).contains(&peak), "peak concurrency {peak}");

    // Read back later, the batch never shows keys.
    let stored = app
        .graphql(
            "query($id: ID!) { provisioningBatch(id: $id) { status results { apiKey status } } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    let results = stored.data()["provisioningBatch"]["results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(results.len(), 20);
    assert!(
        results
            .iter()
            .all(|r| r["apiKey"].is_null() && r["status"] == "SUCCEEDED")
    );
}

#[tokio::test]
async fn bad_tenants_fail_alone_with_their_reasons() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    provision(
        &app,
        &token,
        vec![tenant_input("taken.org")],
        json!({ "wait": true }),
    )
    .await
    .data();
    let tenants = vec![
        tenant_input("good-one.org"),
        tenant_input("bad domain"),
        tenant_input("good-two.org"),
        tenant_input("good-one.org"),
        tenant_input("taken.org"),
    ];
    let response = provision(&app, &token, tenants, json!({ "wait": true })).await;
    let batch = &response.data()["provisionTenants"];
    assert_eq!(batch["status"], "PARTIALLY_FAILED");
    assert_eq!(batch["summary"]["successful"], 2);
    assert_eq!(batch["summary"]["failed"], 3);
    let codes: Vec<Value> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [
            Value::Null,
            json!("BAD_USER_INPUT"),
            Value::Null,
            json!("CONFLICT"),
            json!("CONFLICT")
        ]
    );
    let results = batch["results"].as_array().unwrap();
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("domain")
    );
    assert_eq!(results[4]["attempts"], 1, "conflicts are never retried");
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 3);
    assert_eq!(
        app.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'")
            .await,
        3
    );
}

#[tokio::test]
async fn an_atomic_batch_with_one_failure_is_rolled_back_entirely() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    // A schema nobody registered makes one tenant fail at provisioning, not at validation.
    app.db()
        .execute_unprepared("CREATE SCHEMA tenant_atomic_2")
        .await
        .unwrap();
    let response = provision(
        &app,
        &token,
        inputs("atomic", 4),
        json!({ "atomic": true, "wait": true, "maxConcurrency": 2 }),
    )
    .await;
    let batch = &response.data()["provisionTenants"];
    assert_eq!(batch["status"], "ROLLED_BACK", "{batch}");
    let statuses: Vec<&str> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| *s == "ROLLED_BACK" || *s == "FAILED"),
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == "FAILED").count(), 1);
    assert!(
        batch["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["apiKey"].is_null())
    );
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 0);
    // Only the pre-existing schema remains.
    assert_eq!(
        app.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_batch_over_the_size_limit_is_refused_and_nothing_starts() {
    let app = TestApp::spawn_with(|env| {
        env.insert("MAX_TENANTS_PER_BATCH".into(), "3".into());
    })
    .await;
    let token = app.operator_token().await;
    let response = provision(&app, &token, inputs("big", 4), json!({ "wait": true })).await;
    assert_eq!(response.error_code(), "BAD_USER_INPUT");
    assert_eq!(response.error_field(), Some("tenants"));
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.provisioning_batches")
            .await,
        0
    );
    assert_eq!(app.scalar("SELECT count(*) FROM public.tenants").await, 0);
}

pub const PROGRESS: &str = "subscription($id: ID!) { provisioningProgress(batchId: $id) { seq tenantName step status completed total } }";

/// Every event of a subscription up to its `complete`.
pub async fn follow(app: &TestApp, token: &str, batch_id: &str) -> Vec<Value> {
    let mut socket = app.websocket().await;
    assert_eq!(
        socket.init(Some(token)).await.message()["type"],
        "connection_ack"
    );
    socket
        .subscribe("progress", PROGRESS, json!({ "id": batch_id }))
        .await;
    let mut events = Vec::new();
    loop {
        match socket.next_event().await {
            WsEvent::Message(message) if message["type"] == "next" => {
                events.push(message["payload"]["data"]["provisioningProgress"].clone());
            }
            WsEvent::Message(message) if message["type"] == "complete" => return events,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn progress_subscribers_see_every_step_and_late_ones_miss_nothing() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let started = provision(
        &app,
        &token,
        inputs("live", 6),
        json!({ "maxConcurrency": 2 }),
    )
    .await;
    let batch = &started.data()["provisionTenants"];
    assert_eq!(batch["status"], "RUNNING");
    let id = batch["id"].as_str().unwrap().to_owned();

    let live = follow(&app, &token, &id).await;
    let seqs: Vec<i64> = live.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..live.len() as i64).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    let done: Vec<&Value> = live
        .iter()
        .filter(|e| e["step"] == "DONE" && e["tenantName"].is_string())
        .collect();
    assert_eq!(done.len(), 6);
    assert!(
        done.iter()
            .all(|e| e["status"] == "SUCCEEDED" && e["total"] == 6),
        "{done:?}"
    );
    let last = live.last().unwrap();
    assert!(
        last["tenantName"].is_null() && last["step"] == "DONE" && last["completed"] == 6,
        "the batch's own DONE comes last, with every tenant counted: {last}"
    );
    for step in ["VALIDATE", "CREATE_SCHEMA", "MIGRATE", "SEED", "VERIFY"] {
        assert_eq!(
            live.iter()
                .filter(|e| e["step"] == step && e["status"] == "SUCCEEDED")
                .count(),
            6,
            "{step}"
        );
    }

    // After the end, a new subscriber gets the whole story, then completion.
    let late = follow(&app, &token, &id).await;
    assert_eq!(late, live);
}

#[tokio::test]
async fn progress_is_for_operators_and_known_batches_only() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut socket = app.websocket().await;
    socket.init(Some(&token)).await.message();
    socket
        .subscribe("unknown", PROGRESS, json!({ "id": uuid::Uuid::new_v4() }))
        .await;
    // Execution errors arrive as a `next` carrying `errors` (graphql-transport-ws).
    let reply = socket.next_event().await.message();
    assert_eq!(reply["type"], "next");
    assert_eq!(
        reply["payload"]["errors"][0]["extensions"]["code"],
        "NOT_FOUND"
    );

    let mut anonymous = app.websocket().await;
    anonymous.init(None).await.message();
    anonymous
        .subscribe("anon", PROGRESS, json!({ "id": uuid::Uuid::new_v4() }))
        .await;
    let reply = anonymous.next_event().await.message();
    assert_eq!(
        reply["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn a_fleet_of_thirty_migrates_down_and_back_up() {
    fleet_migrates_down_and_back_up(&TestApp::spawn().await, 30).await;
}

/// `migrateTenants` of a fleet of `size` tenants: to base, to head, nothing to do, then two
/// chosen tenants to a middle revision.
pub async fn fleet_migrates_down_and_back_up(app: &TestApp, size: usize) {
    let token = app.operator_token().await;
    provision(
        app,
        &token,
        inputs("fleet", size),
        json!({ "wait": true, "maxConcurrency": 5 }),
    )
    .await
    .data();

    let down = app
        .graphql(
            MIGRATE,
            json!({ "target": "base", "confirm": "base", "options": { "wait": true } }),
            Some(&token),
        )
        .await;
    let batch = &down.data()["migrateTenants"];
    assert_eq!(
        (batch["kind"].as_str(), batch["status"].as_str()),
        (Some("MIGRATE"), Some("SUCCEEDED"))
    );
    assert_eq!(batch["summary"]["successful"], size);
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE current_revision IS NULL")
            .await,
        size as i64
    );

    let up = app
        .graphql(
            MIGRATE,
            json!({ "target": "head", "options": { "wait": true } }),
            Some(&token),
        )
        .await;
    assert_eq!(up.data()["migrateTenants"]["summary"]["successful"], size);
    let head = migration::tenant_migration_names().last().unwrap().clone();
    assert_eq!(
        app.scalar(&format!("SELECT count(*) FROM public.tenants WHERE current_revision = '{head}' AND migrations_applied")).await,
        size as i64
    );

    // Nothing behind head: an empty batch, at once.
    let noop = app
        .graphql(
            MIGRATE,
            json!({ "target": "head", "options": { "wait": true } }),
            Some(&token),
        )
        .await;
    assert_eq!(
        noop.data()["migrateTenants"]["summary"]["totalRequested"],
        0
    );
    assert_eq!(noop.data()["migrateTenants"]["status"], "SUCCEEDED");

    // Two chosen tenants to a middle revision.
    let ids: Vec<String> = app
        .graphql(
            "{ tenants(first: 2) { nodes { id } } }",
            json!({}),
            Some(&token),
        )
        .await
        .data()["tenants"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    let middle = migration::tenant_migration_names()[1].clone();
    let some = app
        .graphql(
            MIGRATE,
            json!({ "target": middle, "confirm": middle, "ids": ids, "options": { "wait": true } }),
            Some(&token),
        )
        .await;
    assert_eq!(some.data()["migrateTenants"]["summary"]["successful"], 2);
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.tenants WHERE current_revision = '{middle}'"
        ))
        .await,
        2
    );
}

/// Steps every tenant of a fresh fleet of `size` down to the revision before head.
async fn fleet_one_below_head(app: &TestApp, token: &str, size: usize) -> String {
    provision(
        app,
        token,
        inputs("trip", size),
        json!({ "wait": true, "maxConcurrency": 4 }),
    )
    .await
    .data();
    let names = migration::tenant_migration_names();
    let previous = names[names.len() - 2].clone();
    let down = app
        .graphql(
            MIGRATE,
            json!({ "target": previous, "confirm": previous, "options": { "wait": true } }),
            Some(token),
        )
        .await;
    assert_eq!(down.data()["migrateTenants"]["status"], "SUCCEEDED");
    previous
}

#[tokio::test]
async fn a_fleet_migration_moves_each_tenant_in_one_script_with_its_ledger_rows() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let size = 8;
    fleet_one_below_head(&app, &token, size).await;
    let before = app.state.metrics.db_statements();
    let started = app
        .scalar("SELECT floor(extract(epoch FROM now()))::bigint")
        .await;
    let up = app
        .graphql(
            MIGRATE,
            json!({ "target": "head", "options": { "wait": true, "maxConcurrency": 4 } }),
            Some(&token),
        )
        .await;
    let per_tenant = (app.state.metrics.db_statements() - before) as f64 / size as f64;
    assert_eq!(up.data()["migrateTenants"]["status"], "SUCCEEDED");
    // The migrator's way costs 28 statements a tenant here (its ledger reads and writes, one
    // by one), the one-script way 16: most of them the batch's own bookkeeping.
    assert!(per_tenant < 20.0, "{per_tenant} statements per tenant");

    // The registry and every ledger say head, with the rows sea-orm-migration would write.
    let names = migration::tenant_migration_names();
    let head = names.last().unwrap();
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.tenants WHERE current_revision = '{head}' \
             AND migrations_applied AND status = 'ACTIVE' AND tenant_name LIKE 'Tenant trip-%'"
        ))
        .await,
        size as i64
    );
    let schemas: Vec<String> = app
        .state
        .db
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT schema_name FROM public.tenants WHERE tenant_name LIKE 'Tenant trip-%'",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("", "schema_name").unwrap())
        .collect();
    for schema in &schemas {
        let ledger = app
            .state
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                format!(
                    "SELECT version, applied_at FROM \"{schema}\".seaql_migrations ORDER BY version"
                ),
            ))
            .await
            .unwrap();
        let versions: Vec<String> = ledger
            .iter()
            .map(|row| row.try_get("", "version").unwrap())
            .collect();
        assert_eq!(&versions, &names, "{schema}");
        let applied_at: i64 = ledger.last().unwrap().try_get("", "applied_at").unwrap();
        assert!(applied_at >= started, "{schema}: {applied_at} < {started}");
        assert_eq!(
            app.scalar(&format!(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = '{schema}' \
                 AND indexname = 'idx_person_external_ref'"
            ))
            .await,
            1
        );
    }
}

#[tokio::test]
async fn a_tenant_whose_ledger_is_not_where_the_registry_says_goes_through_the_migrator() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    provision(&app, &token, inputs("moved", 2), json!({ "wait": true }))
        .await
        .data();
    let names = migration::tenant_migration_names();
    let (previous, head) = (&names[names.len() - 2], names.last().unwrap());
    // The registry says one below head; the schema's ledger (and tables) are at head.
    app.state
        .db
        .execute_unprepared(&format!(
            "UPDATE public.tenants SET current_revision = '{previous}', migrations_applied = false \
             WHERE tenant_name = 'Tenant moved-0'"
        ))
        .await
        .unwrap();

    let up = app
        .graphql(
            MIGRATE,
            json!({ "target": "head", "options": { "wait": true } }),
            Some(&token),
        )
        .await;
    let batch = &up.data()["migrateTenants"];
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(batch["summary"]["totalRequested"], 1);
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.tenants WHERE tenant_name = 'Tenant moved-0' \
             AND current_revision = '{head}' AND migrations_applied"
        ))
        .await,
        1
    );
    let schema: String = app
        .state
        .db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT schema_name FROM public.tenants WHERE tenant_name = 'Tenant moved-0'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "schema_name")
        .unwrap();
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".seaql_migrations"
        ))
        .await,
        names.len() as i64
    );
}

const BATCHES: &str = "query($first: Int, $status: BatchStatus) { provisioningBatches(first: $first, status: $status) { id status results { domain status } summary { totalRequested } } }";

/// The ids `provisioningBatches` answers with these arguments, in its order.
async fn listed(app: &TestApp, token: &str, variables: Value) -> Vec<String> {
    app.graphql(BATCHES, variables, Some(token)).await.data()["provisioningBatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|batch| batch["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn batches_are_listed_newest_first_by_status_for_operators_only() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut ids = Vec::new();
    for (domain, wanted) in [
        ("listed-first.example", "SUCCEEDED"),
        ("not a domain", "FAILED"),
        ("listed-last.example", "SUCCEEDED"),
    ] {
        let response = provision(
            &app,
            &token,
            vec![tenant_input(domain)],
            json!({ "wait": true }),
        )
        .await;
        let batch = &response.data()["provisionTenants"];
        assert_eq!(batch["status"], wanted, "{batch}");
        ids.push(batch["id"].as_str().unwrap().to_owned());
    }
    let [first, failed, last] = [ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];

    let all = app.graphql(BATCHES, json!({}), Some(&token)).await;
    let batches = all.data()["provisioningBatches"].as_array().unwrap();
    let order: Vec<&str> = batches.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(order, [last, failed, first]);
    // Each with its own results.
    assert_eq!(
        batches[0]["results"],
        json!([{ "domain": "listed-last.example", "status": "SUCCEEDED" }])
    );
    assert_eq!(batches[1]["results"][0]["status"], "FAILED");
    assert_eq!(
        batches[2]["results"],
        json!([{ "domain": "listed-first.example", "status": "SUCCEEDED" }])
    );

    assert_eq!(
        listed(&app, &token, json!({ "status": "SUCCEEDED" })).await,
        [last, first]
    );
    assert_eq!(
        listed(&app, &token, json!({ "status": "FAILED" })).await,
        [failed]
    );
    assert!(
        listed(&app, &token, json!({ "status": "RUNNING" }))
            .await
            .is_empty()
    );
    assert_eq!(
        listed(&app, &token, json!({ "first": 2 })).await,
        [last, failed]
    );
    assert_eq!(listed(&app, &token, json!({ "first": 0 })).await, [last]);
    assert_eq!(listed(&app, &token, json!({ "first": -5 })).await, [last]);

    // 120 older finished batches: the default page is 20, and no page is larger than 100.
    app.db()
        .execute_unprepared(
            "INSERT INTO public.provisioning_batches \
               (id, kind, status, options, total, created_at, started_at, finished_at) \
             SELECT gen_random_uuid(), 'PROVISION', 'SUCCEEDED', '{}', 0, \
                    now() - interval '1 day' - g * interval '1 second', now() - interval '1 day', \
                    now() - interval '1 day' \
             FROM generate_series(1, 120) g",
        )
        .await
        .unwrap();
    let default_page = listed(&app, &token, json!({})).await;
    assert_eq!(default_page.len(), 20);
    assert_eq!(default_page[..3], [last, failed, first]);
    assert_eq!(
        listed(&app, &token, json!({ "first": 1000 })).await.len(),
        100
    );

    let tenant = app.with_tenant("lister.example").await;
    let refused = app.graphql(BATCHES, json!({}), Some(&tenant.admin)).await;
    assert_eq!(refused.error_code(), "FORBIDDEN");
    assert!(refused.0["data"].is_null(), "{}", refused.0);
    let anonymous = app.graphql(BATCHES, json!({}), None).await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
}

/// A tenant a stopped server left `PROVISIONING` outside any batch goes at the next
/// housekeeping (which then prunes ended sessions): its registry row and whatever of its schema exists. The look-up names the
/// jobs table with its schema (the pool's search path has none of ours).
#[tokio::test]
async fn housekeeping_removes_a_tenant_a_stopped_server_left_provisioning() {
    let app = TestApp::spawn().await;
    let stalled = app.with_tenant("stalled.church").await;
    let recent = app.with_tenant("recent.church").await;
    app.db()
        .execute_unprepared(&format!(
            "UPDATE public.tenants SET status = 'PROVISIONING', updated_at = CASE id \
             WHEN '{stalled}' THEN now() - interval '1 day' ELSE now() END \
             WHERE id IN ('{stalled}', '{recent}')",
            stalled = stalled.id,
            recent = recent.id,
        ))
        .await
        .unwrap();

    let removed = tenantgraph::batch::recovery::recover_stalled_tenants(&app.state)
        .await
        .expect("the stalled tenants are found");
    // The app's own housekeeping (a minute after it started) may have been first.
    assert!(removed <= 1, "{removed} removed");
    let left = app
        .db()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT id::text FROM public.tenants WHERE id IN ('{}', '{}') \
                 UNION ALL SELECT nspname::text FROM pg_namespace WHERE nspname = '{}'",
                stalled.id, recent.id, stalled.schema
            ),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(left, vec![recent.id.clone()], "only the recent one is left");
    // The rest of housekeeping runs after it.
    tenantgraph::auth::sessions::prune_ended(&app.state)
        .await
        .expect("ended sessions are pruned");
}

//! Guard rails: documents that would cost thousands of scans, destructive operations without a
//! confirmation, and what a client may and may not learn from a failure.

use serde_json::json;
use tenantgraph::graphql::MAX_COMPLEXITY;

use crate::batch::{follow, inputs, provision};
use crate::helpers::{Gql, TestApp, assert_not_executed, count_statements, tenant_input};
use crate::tenants::inject_failure_into_person_migration;

/// `count` aliases of `people(first: page) { totalCount }`.
fn wide_people_query(count: usize, page: usize) -> String {
    let fields: String = (0..count)
        .map(|i| format!("p{i}: people(first: {page}, search: \"a\") {{ totalCount }} "))
        .collect();
    format!("{{ {fields}}}")
}

// The contract's example, 50 aliases of `people(first: 100)`, must not fit.
const _: () = assert!(MAX_COMPLEXITY < 50 * 100);

#[tokio::test]
async fn guard_a_connection_costs_its_page_size_so_wide_documents_are_refused_unrun() {
    let app = TestApp::spawn_with(count_statements).await;
    let tenant = app.with_tenant("wide.example").await;

    let wide = app
        .graphql(&wide_people_query(50, 100), json!({}), Some(&tenant.viewer))
        .await;
    assert_eq!(wide.error_code(), "BAD_USER_INPUT", "{}", wide.0);
    assert!(wide.error_message().contains("too complex"), "{}", wide.0);
    assert!(wide.0["data"].is_null(), "{}", wide.0);
    assert_not_executed(&wide);

    // The document: 280 aliases, ten of them in one HTTP batch.
    let document = wide_people_query(280, 100);
    let batch: Vec<_> = (0..10).map(|_| json!({ "query": document })).collect();
    let answers: serde_json::Value = app
        .post_json(json!(batch), Some(&tenant.viewer))
        .await
        .json()
        .await
        .unwrap();
    for answer in answers.as_array().expect("one answer per operation") {
        let answer = Gql(answer.clone());
        assert_eq!(answer.error_code(), "BAD_USER_INPUT", "{}", answer.0);
        assert_not_executed(&answer);
    }

    // The same fields on small pages fit, and run.
    let narrow = app
        .graphql(&wide_people_query(50, 2), json!({}), Some(&tenant.viewer))
        .await;
    assert_eq!(narrow.data()["p49"]["totalCount"], 0, "{}", narrow.0);

    // A whole page of tenants with every field a dashboard shows fits the budget.
    let page = app
        .graphql(
            "{ tenants(first: 100) { totalCount pageInfo { hasNextPage endCursor }
               edges { cursor node { id tenantName domain tenantType email phone website address
                 city state schemaName schemaProvisioned migrationsApplied status description
                 apiKeyPrefix settings { features limits { users storageGb } } createdAt updatedAt
                 lastActivityAt } } } }",
            json!({}),
            Some(&tenant.operator),
        )
        .await;
    assert_eq!(page.data()["tenants"]["totalCount"], 1, "{}", page.0);
}

const DELETE: &str = "mutation($id: ID!, $confirm: String) { deleteTenant(id: $id, dropSchema: true, confirm: $confirm) { schemaDropped } }";
const RECREATE: &str = "mutation($id: ID!, $confirm: String) { provisionSchema(tenantId: $id, forceRecreate: true, confirm: $confirm) { schemaProvisioned } }";
const RUN_MIGRATIONS: &str = "mutation($id: ID!, $target: String!, $confirm: String) { runMigrations(tenantId: $id, targetRevision: $target, confirm: $confirm) { currentRevision migrationsApplied } }";
const MIGRATE_TENANTS: &str = "mutation($target: String!, $ids: [ID!], $confirm: String) { migrateTenants(targetRevision: $target, tenantIds: $ids, confirm: $confirm, options: { wait: true }) { status summary { successful } } }";
const TENANT: &str = "query($id: ID!) { tenant(id: $id) { status failureReason currentRevision } }";
const PEOPLE: &str = "{ people(first: 1) { totalCount } }";

fn assert_refused_for_confirm(response: &Gql) {
    assert_eq!(response.error_code(), "BAD_USER_INPUT", "{}", response.0);
    assert_eq!(response.error_field(), Some("confirm"), "{}", response.0);
}

async fn table_count(app: &TestApp, schema: &str) -> i64 {
    app.scalar(&format!(
        "SELECT count(*) FROM pg_tables WHERE schemaname = '{schema}'"
    ))
    .await
}

#[tokio::test]
async fn guard_destructive_operations_without_the_right_confirmation_change_nothing() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("precious.example").await;
    let (id, schema, operator) = (&tenant.id, tenant.schema.as_str(), &tenant.operator);
    let created = app
        .graphql(
            "mutation { createPerson(input: { firstName: \"Ruth\", lastName: \"Moab\" }) { id } }",
            json!({}),
            Some(&tenant.admin),
        )
        .await;
    assert!(created.0["errors"].is_null(), "{}", created.0);
    let tables = table_count(&app, schema).await;
    let people = format!("SELECT count(*) FROM {schema}.person");
    let revision = app
        .graphql(TENANT, json!({ "id": id }), Some(operator))
        .await
        .data()["tenant"]["currentRevision"]
        .clone();

    for confirm in [None, Some("wrong"), Some("base")] {
        let vars = |extra: serde_json::Value| {
            let mut vars = json!({ "id": id, "confirm": confirm });
            vars.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            vars
        };
        assert_refused_for_confirm(&app.graphql(DELETE, vars(json!({})), Some(operator)).await);
        assert_refused_for_confirm(&app.graphql(RECREATE, vars(json!({})), Some(operator)).await);
        for target in ["base", migration::tenant_migration_names()[0].as_str()] {
            assert_refused_for_confirm(
                &app.graphql(
                    RUN_MIGRATIONS,
                    vars(json!({ "target": target })),
                    Some(operator),
                )
                .await,
            );
        }
        // The fleet path (no tenantIds) and an explicit list alike.
        for ids in [json!(null), json!([id])] {
            let fleet = app
                .graphql(
                    MIGRATE_TENANTS,
                    json!({ "target": "base", "ids": ids, "confirm": confirm.filter(|c| *c != "base") }),
                    Some(operator),
                )
                .await;
            assert_refused_for_confirm(&fleet);
        }
    }

    // Nothing changed: the schema, its tables, its rows, its revision, its status.
    assert_eq!(table_count(&app, schema).await, tables);
    assert_eq!(app.scalar(&people).await, 1);
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.provisioning_batches")
            .await,
        0
    );
    let now = app
        .graphql(TENANT, json!({ "id": id }), Some(operator))
        .await;
    assert_eq!(now.data()["tenant"]["status"], "ACTIVE");
    assert_eq!(now.data()["tenant"]["currentRevision"], revision);
    assert_eq!(
        app.graphql_with_key(PEOPLE, json!({}), &tenant.api_key)
            .await
            .data()["people"]["totalCount"],
        1
    );

    // Going up needs no confirmation.
    let up = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": id, "target": "head" }),
            Some(operator),
        )
        .await;
    assert_eq!(
        up.data()["runMigrations"]["migrationsApplied"],
        true,
        "{}",
        up.0
    );

    // The right confirmation goes ahead.
    let dropped = app
        .graphql(
            DELETE,
            json!({ "id": id, "confirm": schema }),
            Some(operator),
        )
        .await;
    assert_eq!(
        dropped.data()["deleteTenant"]["schemaDropped"],
        true,
        "{}",
        dropped.0
    );
    assert_eq!(table_count(&app, schema).await, 0);
}

#[tokio::test]
async fn guard_a_tenant_below_head_refuses_tenant_traffic_until_it_is_back() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("downhill.example").await;
    let (id, operator) = (&tenant.id, &tenant.operator);
    let middle = migration::tenant_migration_names()
        .iter()
        .position(|n| n.ends_with("create_person"))
        .map(|i| migration::tenant_migration_names()[i - 1].clone())
        .unwrap();

    let down = app
        .graphql(
            RUN_MIGRATIONS,
            json!({ "id": id, "target": middle, "confirm": tenant.schema }),
            Some(operator),
        )
        .await;
    assert_eq!(
        down.data()["runMigrations"]["currentRevision"],
        json!(middle)
    );
    let parked = app
        .graphql(TENANT, json!({ "id": id }), Some(operator))
        .await;
    assert_eq!(
        parked.data()["tenant"]["status"],
        "INACTIVE",
        "{}",
        parked.0
    );
    let reason = parked.data()["tenant"]["failureReason"].as_str().unwrap();
    assert!(reason.starts_with("schema below head"), "{reason}");

    // Tenant traffic is refused, by key and by token; an operator cannot switch it back on.
    let by_key = app
        .graphql_with_key(PEOPLE, json!({}), &tenant.api_key)
        .await;
    assert!(!by_key.0["errors"].is_null(), "{}", by_key.0);
    let by_token = app.graphql(PEOPLE, json!({}), Some(&tenant.admin)).await;
    assert_eq!(by_token.error_code(), "UNAUTHENTICATED", "{}", by_token.0);
    let reactivate = app
        .graphql(
            "mutation($id: ID!) { reactivateTenant(id: $id) { status } }",
            json!({ "id": id }),
            Some(operator),
        )
        .await;
    assert_eq!(
        reactivate.error_code(),
        "BAD_USER_INPUT",
        "{}",
        reactivate.0
    );

    // Back at head (a fleet migration this time), it is ACTIVE again and answers.
    let up = app
        .graphql(MIGRATE_TENANTS, json!({ "target": "head" }), Some(operator))
        .await;
    assert_eq!(
        up.data()["migrateTenants"]["summary"]["successful"],
        1,
        "{}",
        up.0
    );
    let back = app
        .graphql(TENANT, json!({ "id": id }), Some(operator))
        .await;
    assert_eq!(back.data()["tenant"]["status"], "ACTIVE");
    assert!(back.data()["tenant"]["failureReason"].is_null());
    assert_eq!(
        app.graphql_with_key(PEOPLE, json!({}), &tenant.api_key)
            .await
            .data()["people"]["totalCount"],
        0
    );
}

#[tokio::test]
async fn guard_a_fleet_migration_obeys_the_batch_size_like_a_list() {
    let app = TestApp::spawn_with(|env| {
        env.insert("MAX_TENANTS_PER_BATCH".into(), "2".into());
    })
    .await;
    let operator = app.operator_token().await;
    for domain in ["one.example", "two.example", "three.example"] {
        let mut input = tenant_input(domain);
        input["runMigrations"] = json!(false);
        app.create_tenant(&operator, input).await;
    }
    let fleet = app
        .graphql(
            MIGRATE_TENANTS,
            json!({ "target": "head" }),
            Some(&operator),
        )
        .await;
    assert_eq!(fleet.error_code(), "BAD_USER_INPUT", "{}", fleet.0);
    assert_eq!(fleet.error_field(), Some("tenantIds"), "{}", fleet.0);
    assert!(
        fleet.error_message().contains("MAX_TENANTS_PER_BATCH"),
        "{}",
        fleet.0
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.provisioning_batches")
            .await,
        0
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE migrations_applied")
            .await,
        0
    );
}

/// `completed` of each event, in `seq` order, checked to never go back.
fn completed_in_seq_order(events: &[serde_json::Value]) -> Vec<i64> {
    let mut sorted: Vec<&serde_json::Value> = events.iter().collect();
    sorted.sort_by_key(|e| e["seq"].as_i64());
    let completed: Vec<i64> = sorted
        .iter()
        .map(|e| e["completed"].as_i64().unwrap())
        .collect();
    assert!(
        completed.windows(2).all(|pair| pair[0] <= pair[1]),
        "completed goes back: {completed:?}"
    );
    completed
}

#[tokio::test]
async fn guard_progress_completed_never_goes_back_live_replayed_or_stored() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let started = provision(
        &app,
        &token,
        inputs("steady", 8),
        json!({ "maxConcurrency": 4 }),
    )
    .await;
    let id = started.data()["provisionTenants"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let live = follow(&app, &token, &id).await;
    let completed = completed_in_seq_order(&live);
    assert_eq!(completed.last(), Some(&8));
    // Each tenant's DONE is counted by its own event: 1, 2, ... 8.
    let done: Vec<i64> = live
        .iter()
        .filter(|e| e["step"] == "DONE" && e["tenantName"].is_string())
        .map(|e| e["completed"].as_i64().unwrap())
        .collect();
    assert_eq!(done, (1..=8).collect::<Vec<_>>());

    let replayed = follow(&app, &token, &id).await;
    assert_eq!(completed_in_seq_order(&replayed), completed);

    // What is kept for history (and replayed by any other server) says the same.
    let stored_sql =
        format!("SELECT count(*) FROM public.provisioning_events WHERE batch_id = '{id}'");
    for _ in 0..50 {
        if app.scalar(&stored_sql).await == live.len() as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let backwards = app
        .scalar(&format!(
            "SELECT count(*) FROM (SELECT completed < lag(completed) OVER (ORDER BY seq) AS back
               FROM public.provisioning_events WHERE batch_id = '{id}') e WHERE back"
        ))
        .await;
    assert_eq!(backwards, 0);
    assert_eq!(app.scalar(&stored_sql).await, live.len() as i64);
}

/// Text that would tell a client about the database rather than about its request.
fn assert_no_database_text(text: &str) {
    for leak in [
        "error returned from database",
        "Execution Error",
        "injected failure",
        "CREATE TABLE",
        "SQLSTATE",
        "sqlx",
    ] {
        assert!(!text.contains(leak), "{leak:?} reached a client: {text}");
    }
}

#[tokio::test]
async fn guard_database_failures_reach_clients_as_a_stable_message_and_a_reference() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    inject_failure_into_person_migration(&app, "tenant_broken_example").await;

    let created = app
        .graphql(
            crate::helpers::CREATE_TENANT,
            json!({ "input": tenant_input("broken.example") }),
            Some(&token),
        )
        .await;
    assert_eq!(created.error_code(), "INTERNAL", "{}", created.0);
    assert_no_database_text(&created.0.to_string());
    let reference = created.0["errors"][0]["extensions"]["reference"]
        .as_str()
        .expect("a reference to quote")
        .to_owned();
    assert!(
        created.error_message().contains(&reference),
        "{}",
        created.0
    );

    // In a batch: the result, the stored job and every progress event, live or replayed.
    let batch = provision(
        &app,
        &token,
        vec![tenant_input("broken.example"), tenant_input("fine.example")],
        json!({ "wait": true, "maxConcurrency": 2, "retryAttempts": 0 }),
    )
    .await;
    let batch = &batch.data()["provisionTenants"];
    assert_eq!(batch["summary"]["failed"], 1, "{batch}");
    let failed = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["domain"] == "broken.example")
        .unwrap();
    assert_eq!(failed["error"]["code"], "INTERNAL");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("internal error (reference "),
        "{failed}"
    );
    assert_no_database_text(&batch.to_string());
    let events = follow(&app, &token, batch["id"].as_str().unwrap()).await;
    assert!(events.iter().any(|e| e["status"] == "FAILED"));
    assert_no_database_text(&serde_json::Value::from(events).to_string());
    let stored = app
        .scalar(
            "SELECT count(*) FROM public.provisioning_jobs
             WHERE error_message LIKE '%database%' OR error_message LIKE '%injected%'",
        )
        .await;
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn guard_batch_defaults_come_from_the_configuration() {
    let app = TestApp::spawn_with(|env| {
        env.insert("RETRY_ATTEMPTS".into(), "0".into());
        env.insert("OPERATION_TIMEOUT_SECONDS".into(), "17".into());
    })
    .await;
    let token = app.operator_token().await;
    provision(
        &app,
        &token,
        inputs("configured", 1),
        json!({ "wait": true }),
    )
    .await;
    provision(
        &app,
        &token,
        inputs("explicit", 1),
        json!({ "wait": true, "retryAttempts": 3, "timeoutSeconds": 30 }),
    )
    .await;
    let options = |key: &str, prefix: &str| {
        format!(
            "SELECT (b.options->>'{key}')::bigint FROM public.provisioning_batches b
             JOIN public.provisioning_jobs j ON j.batch_id = b.id WHERE j.domain LIKE '{prefix}%'"
        )
    };
    assert_eq!(app.scalar(&options("retryAttempts", "configured")).await, 0);
    assert_eq!(
        app.scalar(&options("timeoutSeconds", "configured")).await,
        17
    );
    assert_eq!(app.scalar(&options("retryAttempts", "explicit")).await, 3);
    assert_eq!(app.scalar(&options("timeoutSeconds", "explicit")).await, 30);
}

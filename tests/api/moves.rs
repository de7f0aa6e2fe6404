//! Moving a tenant online to another database server (`moveTenant`): under concurrent writes
//! every acknowledged write reaches the target, and the moves that cannot be made are refused
//! before anything starts. The data servers are databases on the second (logical) cluster.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use serde_json::{Value, json};

use crate::helpers::{OWN_SUBSCRIPTIONS, TestApp, TestDatabase, TestTenant};
use crate::servers::{
    CREATE_PERSON, add_server, create_person, first_names, placement_status, scalar_at,
    schema_exists_at,
};

const BATCH_FIELDS: &str = "id kind status summary { writePauseMs successful failed } \
    results { status server error { code message } }";

/// Asks for the move; with `wait`, answers once its batch has finished (polled, so that a move
/// slowed by a busy shared cluster outlasts no HTTP time-out).
async fn move_tenant(
    app: &TestApp,
    operator: &str,
    id: &str,
    to: &str,
    wait: bool,
) -> crate::helpers::Gql {
    let asked = app
        .graphql(
            &format!(
                "mutation($id: ID!, $to: String!) {{ \
                   moveTenant(tenantId: $id, toServer: $to, options: {{ timeoutSeconds: 600 }}) \
                   {{ {BATCH_FIELDS} }} }}"
            ),
            json!({ "id": id, "to": to }),
            Some(operator),
        )
        .await;
    if !wait || !asked.0["errors"].is_null() {
        return asked;
    }
    let batch_id = asked.data()["moveTenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let finished = wait_for_batch(app, operator, &batch_id).await;
    crate::helpers::Gql(json!({ "data": { "moveTenant": finished } }))
}

/// An app with two data servers and a tenant on `east`.
struct Setup {
    app: TestApp,
    operator: String,
    east: TestDatabase,
    west: TestDatabase,
    tenant: TestTenant,
}

async fn tenant_on_east(domain: &str) -> Setup {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (east, west) = two_servers(&app, &operator).await;
    let tenant = app.with_tenant_on(domain, "east").await;
    Setup {
        app,
        operator,
        east,
        west,
        tenant,
    }
}

/// Two data servers, `east` and `west`, on the logical cluster.
async fn two_servers(app: &TestApp, operator: &str) -> (TestDatabase, TestDatabase) {
    let east = TestDatabase::create_on_second_server().await;
    let west = TestDatabase::create_on_second_server().await;
    add_server(app, operator, "east", &east).await;
    add_server(app, operator, "west", &west).await;
    (east, west)
}

#[tokio::test]
async fn a_tenant_moves_under_concurrent_writes_and_keeps_every_acknowledged_one() {
    // The writer below sends as fast as it is answered: the tenant's rate limit is not under test.
    let app = Arc::new(
        TestApp::spawn_with(|env| {
            env.insert("TENANT_RATE_LIMIT_PER_MINUTE".into(), "1000000".into());
        })
        .await,
    );
    let operator = app.operator_token().await;
    let (east, west) = two_servers(&app, &operator).await;
    let tenant = app.with_tenant_on("moving.test", "east").await;
    create_person(&app, &tenant.admin, "Before").await;
    // Roles numbered by a sequence beyond where a new schema's starts.
    let source = tenantgraph::db::open_pool(&east.url, 1).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &source,
        &format!(
            "INSERT INTO \"{}\".roles (name, description) \
             SELECT 'extra' || n, 'Extra' FROM generate_series(1, 5) AS n",
            tenant.schema
        ),
    )
    .await
    .unwrap();
    source.close().await.unwrap();

    // Writes go on through the API for the whole move: one held during the write pause waits
    // and lands on the target, so none fails.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (app, token, writing) = (app.clone(), tenant.admin.clone(), writing.clone());
        tokio::spawn(async move {
            let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
            let mut n = 0;
            while writing.load(Ordering::SeqCst) {
                n += 1;
                let name = format!("Writer{n}");
                let input = json!({ "input": { "firstName": name, "lastName": "Moving" } });
                let made = app.graphql(CREATE_PERSON, input, Some(&token)).await;
                if made.0["errors"].is_null() {
                    acknowledged.push(name);
                } else {
                    failed.push(made.0["errors"].clone());
                }
            }
            (acknowledged, failed)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let moved = move_tenant(&app, &operator, &tenant.id, "west", true).await;
    let batch = &moved.data()["moveTenant"];
    assert_eq!(batch["kind"], "MOVE");
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(batch["results"][0]["server"], "west");
    assert!(batch["summary"]["writePauseMs"].as_i64().unwrap() >= 0);
    writing.store(false, Ordering::SeqCst);
    let (mut acknowledged, failed) = writer.await.unwrap();
    assert!(!acknowledged.is_empty());
    assert!(
        failed.is_empty(),
        "writes failed during the move: {failed:?}"
    );

    // The tenant works on the target, and writes go there.
    create_person(&app, &tenant.admin, "After").await;
    acknowledged.extend(["Before".to_owned(), "After".to_owned()]);
    let on_target: String = scalar_at(
        &west.url,
        &format!(
            "SELECT string_agg(first_name, ',') FROM \"{}\".person",
            tenant.schema
        ),
    )
    .await;
    let on_target: Vec<&str> = on_target.split(',').collect();
    for name in &acknowledged {
        assert!(
            on_target.contains(&name.as_str()),
            "{name} was acknowledged and is missing"
        );
    }
    assert!(!first_names(&app, &tenant.admin).await.is_empty());
    assert_eq!(placement_status(&west.url, &tenant.id).await, "ACTIVE");
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.tenants WHERE id = '{}' AND server_name = 'west'",
            tenant.id
        ))
        .await,
        1
    );
    let audited = app
        .scalar(&format!(
            "SELECT count(*) FROM public.audit_events WHERE action = 'tenant.move' \
              AND detail->>'to' = 'west' AND (detail->>'writePauseMs')::bigint >= 0 \
              AND tenant_id = '{}'",
            tenant.id
        ))
        .await;
    assert_eq!(audited, 1);
    let finished = app
        .scalar(
            "SELECT count(*) FROM public.audit_events WHERE action = 'batch.finished' \
              AND detail->>'kind' = 'MOVE' AND (detail->>'writePauseMs')::bigint >= 0",
        )
        .await;
    assert_eq!(finished, 1);
    // The source copy and the replication are gone.
    assert!(!schema_exists_at(&east.url, &tenant.schema).await);
    // Slots are the cluster's, which other tests' servers share: this move's only.
    let left: i64 = scalar_at(
        &east.url,
        &format!(
            "SELECT (SELECT count(*) FROM public.tenant_placements) \
                  + (SELECT count(*) FROM pg_publication) \
                  + (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tg_move_{}')",
            tenant.id.replace('-', "")
        ),
    )
    .await;
    assert_eq!(left, 0);
    let subscriptions: i64 = scalar_at(&west.url, OWN_SUBSCRIPTIONS).await;
    assert_eq!(subscriptions, 0);
    // Sequences continue after the moved rows: a new role gets a new number.
    let role: i32 = scalar_at(
        &west.url,
        &format!(
            "INSERT INTO \"{}\".roles (name, description) VALUES ('later', 'Later') RETURNING id",
            tenant.schema
        ),
    )
    .await;
    let roles: i64 = scalar_at(
        &west.url,
        &format!("SELECT count(*) FROM \"{}\".roles", tenant.schema),
    )
    .await;
    assert_eq!(i64::from(role), roles);
}

#[tokio::test]
async fn moves_that_cannot_be_made_are_refused_before_anything_starts() {
    let Setup {
        app,
        operator,
        east,
        west,
        tenant,
    } = tenant_on_east("staying.test").await;
    let on_control = app.with_tenant("on-control.test").await;
    let code = |answer: &crate::helpers::Gql| answer.error_code().to_owned();

    let unknown_tenant = move_tenant(
        &app,
        &operator,
        &uuid::Uuid::new_v4().to_string(),
        "west",
        true,
    )
    .await;
    assert_eq!(code(&unknown_tenant), "NOT_FOUND");
    let unknown_server = move_tenant(&app, &operator, &tenant.id, "north", true).await;
    assert_eq!(code(&unknown_server), "NOT_FOUND");
    let same = move_tenant(&app, &operator, &tenant.id, "east", true).await;
    assert_eq!(code(&same), "BAD_USER_INPUT");
    assert_eq!(same.error_field(), Some("toServer"));
    let to_control = move_tenant(&app, &operator, &tenant.id, "control", true).await;
    assert_eq!(code(&to_control), "BAD_USER_INPUT");
    let from_control = move_tenant(&app, &operator, &on_control.id, "west", true).await;
    assert_eq!(code(&from_control), "BAD_USER_INPUT");
    assert_eq!(from_control.error_field(), Some("tenantId"));

    // A server without logical replication: a database on the control cluster.
    let plain = TestDatabase::create_on_first_server().await;
    add_server(&app, &operator, "plain", &plain).await;
    let not_logical = move_tenant(&app, &operator, &tenant.id, "plain", true).await;
    assert_eq!(code(&not_logical), "BAD_USER_INPUT");
    assert!(not_logical.error_message().contains("wal_level"));

    // A schema of the tenant's name on the target (kept by a deleted tenant, made by hand).
    let target = tenantgraph::db::open_pool(&west.url, 1).await.unwrap();
    let squatter = format!("CREATE SCHEMA \"{}\"", tenant.schema);
    sea_orm::ConnectionTrait::execute_unprepared(&target, &squatter)
        .await
        .unwrap();
    let taken = move_tenant(&app, &operator, &tenant.id, "west", true).await;
    assert_eq!(code(&taken), "CONFLICT");
    assert_eq!(taken.error_field(), Some("toServer"));
    assert!(schema_exists_at(&west.url, &tenant.schema).await);
    target.close().await.unwrap();

    app.graphql(
        "mutation { drainDatabaseServer(name: \"west\") { state } }",
        json!({}),
        Some(&operator),
    )
    .await
    .data();
    let draining = move_tenant(&app, &operator, &tenant.id, "west", true).await;
    assert_eq!(code(&draining), "BAD_USER_INPUT");

    // Only operators move tenants.
    let by_tenant = move_tenant(&app, &tenant.admin, &tenant.id, "west", true).await;
    assert!(matches!(
        code(&by_tenant).as_str(),
        "FORBIDDEN" | "UNAUTHENTICATED"
    ));

    // Nothing was made, and the tenant works where it was.
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.provisioning_batches WHERE kind = 'MOVE'")
            .await,
        0
    );
    assert_eq!(placement_status(&east.url, &tenant.id).await, "ACTIVE");
    create_person(&app, &tenant.admin, "Stayed").await;
}

#[tokio::test]
async fn a_tenant_already_being_moved_is_not_moved_twice() {
    let Setup {
        app,
        operator,
        east: _east,
        west,
        tenant,
    } = tenant_on_east("twice.test").await;
    let first = move_tenant(&app, &operator, &tenant.id, "west", false).await;
    let batch_id = first.data()["moveTenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = move_tenant(&app, &operator, &tenant.id, "west", true).await;
    assert_eq!(second.error_code(), "CONFLICT");
    let finished = wait_for_batch(&app, &operator, &batch_id).await;
    assert_eq!(finished["status"], "SUCCEEDED", "{finished}");
    assert_eq!(placement_status(&west.url, &tenant.id).await, "ACTIVE");
    create_person(&app, &tenant.admin, "Moved").await;
}

/// The batch `id` once it has finished.
async fn wait_for_batch(app: &TestApp, operator: &str, id: &str) -> Value {
    loop {
        let batch = app
            .graphql(
                &format!("query($id: ID!) {{ provisioningBatch(id: $id) {{ {BATCH_FIELDS} }} }}"),
                json!({ "id": id }),
                Some(operator),
            )
            .await;
        let batch = batch.data()["provisioningBatch"].clone();
        if !matches!(batch["status"].as_str(), Some("PENDING" | "RUNNING")) {
            return batch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_move_that_fails_rolls_back_to_a_tenant_that_works_on_its_server() {
    let Setup {
        app,
        operator,
        east,
        west,
        tenant,
    } = tenant_on_east("rolled-back.test").await;
    create_person(&app, &tenant.admin, "Kept").await;
    // A publication of the move's name on the source already: the move fails at step 2.
    let source = tenantgraph::db::open_pool(&east.url, 1).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &source,
        &format!(
            "CREATE PUBLICATION tg_move_{} FOR ALL TABLES",
            tenant.id.replace('-', "")
        ),
    )
    .await
    .unwrap();
    source.close().await.unwrap();

    let moved = move_tenant(&app, &operator, &tenant.id, "west", true).await;
    let batch = &moved.data()["moveTenant"];
    assert_eq!(batch["status"], "FAILED", "{batch}");
    assert_eq!(batch["results"][0]["error"]["code"], "INTERNAL");
    assert!(batch["summary"]["writePauseMs"].is_null());

    // The tenant is where it was, works there, and nothing of the move is left.
    assert_eq!(placement_status(&east.url, &tenant.id).await, "ACTIVE");
    assert!(!schema_exists_at(&west.url, &tenant.schema).await);
    let left: i64 = scalar_at(&east.url, "SELECT count(*) FROM pg_publication").await;
    assert_eq!(left, 0);
    create_person(&app, &tenant.admin, "Still here").await;
    assert!(
        first_names(&app, &tenant.admin)
            .await
            .contains(&"Kept".to_owned())
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.tenants WHERE id = '{}' AND server_name = 'east'",
            tenant.id
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn of_two_moves_asked_for_at_once_only_one_is_made() {
    let Setup {
        app,
        operator,
        east: _east,
        west,
        tenant,
    } = tenant_on_east("at-once.test").await;
    let (first, second) = tokio::join!(
        move_tenant(&app, &operator, &tenant.id, "west", true),
        move_tenant(&app, &operator, &tenant.id, "west", true),
    );
    let (made, refused) = if first.0["errors"].is_null() {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(made.data()["moveTenant"]["status"], "SUCCEEDED");
    // Refused as a conflict, or, when the first had already finished, as a tenant already there.
    assert!(
        matches!(refused.error_code(), "CONFLICT" | "BAD_USER_INPUT"),
        "{:?}",
        refused.0
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.provisioning_batches WHERE kind = 'MOVE'")
            .await,
        1
    );
    assert_eq!(placement_status(&west.url, &tenant.id).await, "ACTIVE");
}

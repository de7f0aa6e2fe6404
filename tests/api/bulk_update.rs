//! Bulk tenant updates (`updateTenants`): one change to many tenants on the batch machinery,
//! by ids or by filter, all or nothing on request.

use sea_orm::{
    ConnectionTrait,
    sqlx::{Connection, PgConnection},
};
use serde_json::{Value, json};

use crate::{
    batch::{follow, inputs, provision},
    helpers::{Gql, TENANT_PASSWORD, TestApp, tenant_input},
};

pub const UPDATE: &str = r#"
mutation($ids: [ID!], $filter: TenantFilter, $input: UpdateTenantInput!, $options: BatchOptions) {
  updateTenants(tenantIds: $ids, filter: $filter, input: $input, options: $options) {
    id kind status
    results { tenantName domain schemaName status tenantId error { code message } attempts }
    summary { totalRequested successful failed }
  }
}"#;

const TENANTS: &str = "{ tenants(first: 20) { nodes { id domain tenantType status settings { features limits { users storageGb requestsPerMinute } } } } }";

async fn update(app: &TestApp, token: &str, variables: Value) -> Gql {
    app.graphql(UPDATE, variables, Some(token)).await
}

/// `count` provisioned tenants `<prefix>-0`…; their ids in order.
async fn tenants(app: &TestApp, token: &str, prefix: &str, count: usize) -> Vec<String> {
    let made = provision(app, token, inputs(prefix, count), json!({ "wait": true })).await;
    made.data()["provisionTenants"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["tenantId"].as_str().unwrap().to_owned())
        .collect()
}

/// Every tenant as `tenants` lists it, by domain.
async fn registry(app: &TestApp, token: &str) -> std::collections::BTreeMap<String, Value> {
    app.graphql(TENANTS, json!({}), Some(token)).await.data()["tenants"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| (node["domain"].as_str().unwrap().to_owned(), node.clone()))
        .collect()
}

/// Holds the change of tenant `domain` to `tenant_type` (the test's own tenant types) on a lock
/// until the returned connection is closed.
async fn hold_update(app: &TestApp, domain: &str, tenant_type: &str) -> PgConnection {
    app.db()
        .execute_unprepared(&format!(
            "CREATE FUNCTION public.hold_update() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_advisory_xact_lock_shared(4343); RETURN NEW; END $$;
             CREATE TRIGGER hold_update BEFORE UPDATE ON public.tenants FOR EACH ROW
               WHEN (NEW.domain = '{domain}' AND NEW.tenant_type = '{tenant_type}')
               EXECUTE FUNCTION public.hold_update();"
        ))
        .await
        .unwrap();
    let mut hold = PgConnection::connect(&app.database.url).await.unwrap();
    sea_orm::sqlx::query("SELECT pg_advisory_lock(4343)")
        .execute(&mut hold)
        .await
        .unwrap();
    hold
}

/// Submits an update; its batch id once a change waits on [`hold_update`]'s lock.
async fn submit_held(app: &TestApp, token: &str, variables: Value) -> String {
    let response = update(app, token, variables).await;
    let batch_id = response.data()["updateTenants"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    while app
        .scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4343 AND NOT granted \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .await
        == 0
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    batch_id
}

/// Lets the held change go on; returns once the batch has ended.
async fn release(app: &TestApp, token: &str, hold: PgConnection, batch_id: &str) {
    hold.close().await.unwrap();
    follow(app, token, batch_id).await;
}

/// Every error of a response as `(code, field)`, sorted.
fn faults(response: &Gql) -> Vec<(String, Option<String>)> {
    let mut faults: Vec<_> = response.0["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {}", response.0))
        .iter()
        .map(|error| {
            (
                error["extensions"]["code"].as_str().unwrap().to_owned(),
                error["extensions"]["field"].as_str().map(str::to_owned),
            )
        })
        .collect();
    faults.sort();
    faults
}

async fn roles_named(app: &TestApp, schema: &str, role: &str) -> i64 {
    app.scalar(&format!(
        "SELECT count(*) FROM {schema}.roles WHERE name = '{role}'"
    ))
    .await
}

async fn create_template(app: &TestApp, token: &str) {
    app.graphql(
        "mutation($input: TenantTemplateInput!) { createTenantTemplate(input: $input) { id } }",
        json!({ "input": {
            "name": "Audited",
            "settings": { "features": ["reporting"], "limits": { "users": 40 } },
            "roles": [{ "name": "auditor", "permissions": ["people:read"] }],
        } }),
        Some(token),
    )
    .await
    .data();
}

#[tokio::test]
async fn an_update_by_ids_changes_settings_limits_features_and_type_of_those_tenants_only() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let ids = tenants(&app, &token, "ids", 4).await;
    let before = registry(&app, &token).await;

    let response = update(
        &app,
        &token,
        json!({
            "ids": ids[..3],
            "input": {
                "tenantType": "school",
                "settings": { "features": ["analytics", "reporting"], "limits": { "users": 25, "storageGb": 7 } },
            },
            "options": { "wait": true },
        }),
    )
    .await;
    let batch = &response.data()["updateTenants"];
    assert_eq!(batch["kind"], "UPDATE");
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(
        batch["summary"],
        json!({ "totalRequested": 3, "successful": 3, "failed": 0 })
    );
    let results = batch["results"].as_array().unwrap();
    for (result, id) in results.iter().zip(&ids) {
        assert_eq!(result["status"], "SUCCEEDED", "{result}");
        assert_eq!(result["tenantId"], json!(id));
        assert_eq!(result["attempts"], 1);
    }

    let after = registry(&app, &token).await;
    for i in 0..3 {
        let tenant = &after[&format!("ids-{i}")];
        assert_eq!(tenant["tenantType"], "school");
        assert_eq!(
            tenant["settings"],
            json!({ "features": ["analytics", "reporting"], "limits": { "users": 25, "storageGb": 7, "requestsPerMinute": null } })
        );
        assert_eq!(tenant["status"], "ACTIVE");
    }
    assert_eq!(
        after["ids-3"], before["ids-3"],
        "the tenant not named is left alone"
    );

    let batch_id = batch["id"].as_str().unwrap();
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.audit_events WHERE action = 'batch.update' AND detail->>'batchId' = '{batch_id}'"
        ))
        .await,
        1
    );
    let audited = ids[..3]
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(DISTINCT tenant_id) FROM public.audit_events WHERE action = 'tenant.update' AND outcome = 'SUCCESS' AND tenant_id IN ({audited})"
        ))
        .await,
        3
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.audit_events WHERE action = 'tenant.update'")
            .await,
        3,
        "one audit row a tenant changed"
    );
}

#[tokio::test]
async fn an_update_by_filter_deactivates_the_matching_tenants_ends_their_sessions_and_reactivates_them()
 {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let mut sessions = Vec::new();
    for (domain, tenant_type) in [("north", "church"), ("south", "church"), ("east", "school")] {
        let mut input = tenant_input(domain);
        input["tenantType"] = json!(tenant_type);
        input["admin"] = json!({ "email": format!("admin@{domain}"), "password": TENANT_PASSWORD });
        app.create_tenant(&token, input).await;
        sessions.push(app.tenant_token(domain, &format!("admin@{domain}")).await);
    }
    let me = "{ me { kind } }";

    let response = update(
        &app,
        &token,
        json!({ "filter": { "tenantType": "church" }, "input": { "status": "INACTIVE" }, "options": { "wait": true } }),
    )
    .await;
    let batch = &response.data()["updateTenants"];
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    let domains: Vec<&str> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["domain"].as_str().unwrap())
        .collect();
    assert_eq!(domains, ["north", "south"]);
    let after = registry(&app, &token).await;
    assert_eq!(after["north"]["status"], "INACTIVE");
    assert_eq!(after["south"]["status"], "INACTIVE");
    assert_eq!(after["east"]["status"], "ACTIVE");
    for session in &sessions[..2] {
        let refused = app.graphql(me, json!({}), Some(session)).await;
        assert_eq!(refused.error_code(), "UNAUTHENTICATED");
    }
    let kept = app.graphql(me, json!({}), Some(&sessions[2])).await;
    assert_eq!(kept.data()["me"]["kind"], "TENANT_USER");
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.audit_events WHERE action = 'tenant.deactivate' AND (detail->>'sessionsEnded')::int = 1"
        )
        .await,
        2,
        "deactivated as deactivateTenant does, each session ended"
    );

    // A filter on the status finds them again, and turns them back on.
    let response = update(
        &app,
        &token,
        json!({ "filter": { "status": "INACTIVE" }, "input": { "status": "ACTIVE" }, "options": { "wait": true } }),
    )
    .await;
    assert_eq!(response.data()["updateTenants"]["summary"]["successful"], 2);
    let after = registry(&app, &token).await;
    assert!(after.values().all(|tenant| tenant["status"] == "ACTIVE"));
    let login = app
        .tenant_login("north", "admin@north", TENANT_PASSWORD)
        .await;
    assert!(login.data()["login"]["token"].is_string());

    // A filter that matches nobody is an empty batch, said so at once.
    let response = update(
        &app,
        &token,
        json!({ "filter": { "tenantType": "nobody" }, "input": { "status": "INACTIVE" }, "options": { "wait": true } }),
    )
    .await;
    let empty = &response.data()["updateTenants"];
    assert_eq!(empty["status"], "SUCCEEDED");
    assert_eq!(
        empty["summary"],
        json!({ "totalRequested": 0, "successful": 0, "failed": 0 })
    );
    assert_eq!(empty["results"], json!([]));
}

#[tokio::test]
async fn progress_of_an_update_is_streamed_step_by_step_to_the_end() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    tenants(&app, &token, "live", 5).await;
    let response = update(
        &app,
        &token,
        json!({ "filter": { "search": "live" }, "input": { "settings": { "features": ["webhooks"] } }, "options": { "maxConcurrency": 2 } }),
    )
    .await;
    let batch = &response.data()["updateTenants"];
    assert_eq!(batch["status"], "RUNNING");
    let events = follow(&app, &token, batch["id"].as_str().unwrap()).await;
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (0..events.len() as i64).collect::<Vec<_>>());
    for step in ["REGISTER", "DONE"] {
        let succeeded = events
            .iter()
            .filter(|e| {
                e["tenantName"].is_string() && e["step"] == step && e["status"] == "SUCCEEDED"
            })
            .count();
        assert_eq!(succeeded, 5, "{step}: {events:#?}");
    }
    let last = events.last().unwrap();
    assert!(
        last["tenantName"].is_null()
            && last["step"] == "DONE"
            && last["completed"] == 5
            && last["total"] == 5,
        "{last}"
    );
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.tenants WHERE settings->'features' = '[\"webhooks\"]'"
        )
        .await,
        5
    );
}

#[tokio::test]
async fn an_atomic_update_with_one_failing_tenant_leaves_every_tenant_as_it_was() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    create_template(&app, &token).await;
    let ids = tenants(&app, &token, "atomic", 5).await;
    let before = registry(&app, &token).await;
    // The schema goes behind the registry's back: adding the template's roles fails there.
    app.db()
        .execute_unprepared("DROP SCHEMA tenant_atomic_3 CASCADE")
        .await
        .unwrap();

    let response = update(
        &app,
        &token,
        json!({
            "ids": ids,
            "input": { "template": "audited", "tenantType": "audited", "status": "INACTIVE" },
            "options": { "atomic": true, "wait": true, "maxConcurrency": 2 },
        }),
    )
    .await;
    let batch = &response.data()["updateTenants"];
    assert_eq!(batch["status"], "ROLLED_BACK", "{batch}");
    let results = batch["results"].as_array().unwrap();
    for result in results {
        let expected = if result["domain"] == "atomic-3" {
            "FAILED"
        } else {
            "ROLLED_BACK"
        };
        assert_eq!(result["status"], expected, "{result}");
    }
    assert_eq!(results[3]["error"]["code"], "INTERNAL");

    let after = registry(&app, &token).await;
    assert_eq!(after, before, "settings, type and status all as they were");
    let audited = |outcome: &str, undone: bool| {
        format!(
            "SELECT count(*) FROM public.audit_events WHERE action = 'tenant.update' AND outcome = '{outcome}' \
               AND (detail->>'undone' IS NOT NULL) = {undone}"
        )
    };
    let changed = app.scalar(&audited("SUCCESS", false)).await;
    assert_eq!(
        app.scalar(&audited("SUCCESS", true)).await,
        changed,
        "every change made is audited, and so is its undoing"
    );
    assert_eq!(app.scalar(&audited("FAILURE", false)).await, 1);
    for i in [0, 1, 2, 4] {
        assert_eq!(
            roles_named(&app, &format!("tenant_atomic_{i}"), "auditor").await,
            0,
            "the template's role is taken away again from atomic-{i}"
        );
    }
}

#[tokio::test]
async fn an_undone_update_keeps_what_was_changed_again_in_the_meantime() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    create_template(&app, &token).await;
    let ids = tenants(&app, &token, "kept", 3).await;
    let before = registry(&app, &token).await;
    app.db()
        .execute_unprepared("DROP SCHEMA tenant_kept_2 CASCADE")
        .await
        .unwrap();
    let hold = hold_update(&app, "kept-1", "school").await;
    let batch_id = submit_held(
        &app,
        &token,
        json!({ "ids": ids, "input": { "template": "Audited", "tenantType": "school" }, "options": { "atomic": true, "maxConcurrency": 1 } }),
    )
    .await;
    // The first tenant, changed by the batch, is changed again by an operator.
    app.graphql(
        "mutation($id: ID!) { updateTenant(id: $id, input: { tenantType: \"church\" }) { id } }",
        json!({ "id": ids[0] }),
        Some(&token),
    )
    .await
    .data();
    release(&app, &token, hold, &batch_id).await;

    let after = registry(&app, &token).await;
    assert_eq!(
        after["kept-0"]["tenantType"], "church",
        "the later change stays"
    );
    assert_eq!(after["kept-0"]["settings"], before["kept-0"]["settings"]);
    assert_eq!(after["kept-1"], before["kept-1"]);
    for i in 0..2 {
        assert_eq!(
            roles_named(&app, &format!("tenant_kept_{i}"), "auditor").await,
            0
        );
    }
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.audit_events WHERE tenant_id = '{}' \
               AND detail->'changedSince' = '[\"tenantType\"]'",
            ids[0]
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn a_non_atomic_update_changes_the_others_and_reports_a_tenant_deleted_before_its_turn() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    create_template(&app, &token).await;
    let ids = tenants(&app, &token, "partial", 4).await;
    // The first tenant's change waits on a lock the test holds, so the batch is submitted and
    // running when the third tenant is deleted.
    let hold = hold_update(&app, "partial-0", "audited").await;
    let batch_id = submit_held(
        &app,
        &token,
        json!({ "ids": ids, "input": { "template": "Audited", "tenantType": "audited" }, "options": { "maxConcurrency": 1 } }),
    )
    .await;
    app.graphql(
        "mutation($id: ID!) { deleteTenant(id: $id) { schemaDropped } }",
        json!({ "id": ids[2] }),
        Some(&token),
    )
    .await
    .data();
    release(&app, &token, hold, &batch_id).await;

    let response = app
        .graphql(
            "query($id: ID!) { provisioningBatch(id: $id) { kind status results { domain status error { code } } summary { successful failed } } }",
            json!({ "id": batch_id }),
            Some(&token),
        )
        .await;
    let batch = &response.data()["provisioningBatch"];
    assert_eq!(batch["kind"], "UPDATE");
    assert_eq!(batch["status"], "PARTIALLY_FAILED", "{batch}");
    assert_eq!(batch["summary"], json!({ "successful": 3, "failed": 1 }));
    let results = batch["results"].as_array().unwrap();
    assert_eq!(results[2]["status"], "FAILED");
    assert_eq!(results[2]["error"]["code"], "NOT_FOUND");

    let after = registry(&app, &token).await;
    for i in [0, 1, 3] {
        let tenant = &after[&format!("partial-{i}")];
        assert_eq!(tenant["tenantType"], "audited");
        assert_eq!(tenant["settings"]["features"], json!(["reporting"]));
        assert_eq!(tenant["settings"]["limits"]["users"], 40);
        assert_eq!(
            roles_named(&app, &format!("tenant_partial_{i}"), "auditor").await,
            1
        );
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.audit_events WHERE action = 'tenant.update' AND outcome = 'SUCCESS'")
            .await,
        3
    );
}

#[tokio::test]
async fn every_fault_of_an_update_is_refused_with_its_field_and_nothing_starts() {
    let app = TestApp::spawn_with(|env| {
        env.insert("MAX_TENANTS_PER_BATCH".into(), "2".into());
    })
    .await;
    let token = app.operator_token().await;
    let ids = tenants(&app, &token, "faults", 2).await;
    let settings = json!({ "features": ["basic"] });
    let unknown = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    let cases = [
        (
            json!({ "input": { "settings": settings } }),
            vec![("BAD_USER_INPUT", Some("tenantIds"))],
        ),
        (
            json!({ "ids": ids, "filter": {}, "input": { "settings": settings } }),
            vec![("BAD_USER_INPUT", Some("filter"))],
        ),
        (
            json!({ "ids": ids, "input": { "tenantName": "Same", "domain": "same.org", "email": "a@b.org" } }),
            vec![
                ("BAD_USER_INPUT", Some("tenantName")),
                ("BAD_USER_INPUT", Some("domain")),
                ("BAD_USER_INPUT", Some("email")),
            ],
        ),
        (
            json!({ "ids": ids, "input": {} }),
            vec![("BAD_USER_INPUT", Some("input"))],
        ),
        (
            json!({ "ids": ids, "input": { "status": "PENDING" } }),
            vec![("BAD_USER_INPUT", Some("status"))],
        ),
        (
            json!({ "ids": ids, "input": { "template": "no such", "tenantType": "a b", "settings": { "features": ["teleport"], "limits": { "users": 0 } } } }),
            vec![
                ("BAD_USER_INPUT", Some("tenantType")),
                ("BAD_USER_INPUT", Some("settings.features")),
                ("BAD_USER_INPUT", Some("settings.limits.users")),
                ("BAD_USER_INPUT", Some("template")),
            ],
        ),
        (
            json!({ "ids": [ids[0], unknown[0], unknown[1]], "input": { "settings": settings } }),
            vec![("BAD_USER_INPUT", Some("tenantIds"))],
        ),
        (
            json!({ "ids": [ids[0], ids[0]], "input": { "settings": settings } }),
            vec![("BAD_USER_INPUT", Some("tenantIds"))],
        ),
        (
            json!({ "ids": [ids[0], "not-an-id"], "input": { "settings": settings } }),
            vec![("BAD_USER_INPUT", Some("tenantIds"))],
        ),
        (
            json!({ "ids": [ids[0], unknown[0]], "input": { "settings": settings } }),
            vec![("NOT_FOUND", None)],
        ),
        (
            json!({ "ids": unknown, "input": { "settings": settings } }),
            vec![("NOT_FOUND", None), ("NOT_FOUND", None)],
        ),
        (
            json!({ "ids": ids, "input": { "settings": settings }, "options": { "maxConcurrency": 0 } }),
            vec![("BAD_USER_INPUT", Some("options.maxConcurrency"))],
        ),
    ];
    for (variables, expected) in cases {
        let response = update(&app, &token, variables.clone()).await;
        let mut expected: Vec<(String, Option<String>)> = expected
            .into_iter()
            .map(|(code, field)| (code.to_owned(), field.map(str::to_owned)))
            .collect();
        expected.sort();
        assert_eq!(faults(&response), expected, "{variables}: {}", response.0);
    }
    // Unknown ids are named one by one.
    let response = update(
        &app,
        &token,
        json!({ "ids": unknown, "input": { "settings": settings } }),
    )
    .await;
    let messages: Vec<&str> = response.0["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["message"].as_str().unwrap())
        .collect();
    for id in unknown {
        let named = messages
            .iter()
            .filter(|message| message.contains(&id.to_string()))
            .count();
        assert_eq!(named, 1, "{id}: {messages:?}");
    }

    // A filter matching more than a batch holds is refused, naming the filter.
    tenants(&app, &token, "more", 1).await;
    let response = update(
        &app,
        &token,
        json!({ "filter": {}, "input": { "settings": settings } }),
    )
    .await;
    assert_eq!(
        faults(&response),
        [("BAD_USER_INPUT".to_owned(), Some("filter".to_owned()))]
    );

    assert_eq!(
        app.scalar("SELECT count(*) FROM public.provisioning_batches WHERE kind = 'UPDATE'")
            .await,
        0,
        "nothing started"
    );
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.tenants WHERE settings->'features' = '[\"basic\"]'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn only_platform_operators_update_tenants_in_bulk() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("bulk-guard").await;
    let variables = json!({ "ids": [tenant.id], "input": { "status": "INACTIVE" } });
    let anonymous = app.graphql(UPDATE, variables.clone(), None).await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
    let admin = app
        .graphql(UPDATE, variables.clone(), Some(&tenant.admin))
        .await;
    assert_eq!(admin.error_code(), "FORBIDDEN");
    let key = app
        .graphql_with_key(UPDATE, variables, &tenant.api_key)
        .await;
    assert_eq!(key.error_code(), "FORBIDDEN");
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE status = 'ACTIVE'")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.provisioning_batches WHERE kind = 'UPDATE'")
            .await,
        0
    );
}

#[tokio::test]
async fn update_tenant_applies_a_template_and_a_status_to_one_tenant() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    create_template(&app, &token).await;
    let ids = tenants(&app, &token, "single", 1).await;
    let response = app
        .graphql(
            "mutation($id: ID!, $input: UpdateTenantInput!) { updateTenant(id: $id, input: $input) { status settings { features limits { users storageGb } } } }",
            json!({ "id": ids[0], "input": { "template": "AUDITED", "settings": { "limits": { "users": 9 } }, "status": "INACTIVE" } }),
            Some(&token),
        )
        .await;
    let tenant = &response.data()["updateTenant"];
    assert_eq!(tenant["status"], "INACTIVE");
    assert_eq!(tenant["settings"]["features"], json!(["reporting"]));
    assert_eq!(
        tenant["settings"]["limits"]["users"], 9,
        "the input's own settings win over the template's"
    );
    assert_eq!(roles_named(&app, "tenant_single_0", "auditor").await, 1);
}

//! Typed states: the registry's and the batch tables' states are enums in the code and CHECK
//! constraints in the database, and a schema name must be one `SchemaName` accepts, so that a bad
//! row can be written neither by the server nor by hand.

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::TestApp;

async fn refused(app: &TestApp, sql: &str, constraint: &str) {
    let err = app
        .db()
        .execute_unprepared(sql)
        .await
        .expect_err(&format!("the database refuses: {sql}"));
    let text = err.to_string();
    assert!(
        text.contains("violates check constraint") && text.contains(constraint),
        "{sql}: {text}"
    );
}

async fn accepted(app: &TestApp, sql: &str) {
    app.db()
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

#[tokio::test]
async fn typed_states_bad_states_and_schema_names_are_refused_by_the_database() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (tenant, _) = app.tenant_with_admin(&operator, "typed.example").await;
    let update = |set: &str| format!("UPDATE public.tenants SET {set} WHERE id = '{tenant}'");

    refused(&app, &update("status = 'ZOMBIE'"), "tenants_status_check").await;
    for bad in [
        "Tenant_Typed",
        "tenant-typed",
        "1tenant",
        "pg_typed",
        "public",
        "information_schema",
        "tenant_typé",
        "",
    ] {
        refused(
            &app,
            &update(&format!("schema_name = '{bad}'")),
            "tenants_schema_name_check",
        )
        .await;
    }
    refused(
        &app,
        &update(&format!("schema_name = '{}'", "t".repeat(64))),
        "tenants_schema_name_check",
    )
    .await;
    refused(
        &app,
        &update("api_key_permissions = '{\"users:write\": true}'"),
        "tenants_api_key_permissions_check",
    )
    .await;
    accepted(&app, &update("status = 'INACTIVE'")).await;

    let batch = "00000000-0000-0000-0000-0000000000b1";
    refused(
        &app,
        &format!(
            "INSERT INTO public.provisioning_batches (id, kind, status, options, total) \
             VALUES ('{batch}', 'PROVISION', 'HALF_DONE', '{{}}', 1)"
        ),
        "provisioning_batches_status_check",
    )
    .await;
    accepted(
        &app,
        &format!(
            "INSERT INTO public.provisioning_batches (id, kind, status, options, total) \
             VALUES ('{batch}', 'PROVISION', 'PENDING', '{{}}', 1)"
        ),
    )
    .await;
    let job = |status: &str, step: &str| {
        format!(
            "INSERT INTO public.provisioning_jobs (id, batch_id, position, tenant_name, domain, status, step) \
             VALUES (gen_random_uuid(), '{batch}', 0, 'T', 't.example', '{status}', '{step}')"
        )
    };
    refused(&app, &job("LOST", "SEED"), "provisioning_jobs_status_check").await;
    refused(
        &app,
        &job("RUNNING", "DANCE"),
        "provisioning_jobs_step_check",
    )
    .await;
    let event = |step: &str, status: &str| {
        format!(
            "INSERT INTO public.provisioning_events (batch_id, seq, step, status, completed, total, at) \
             VALUES ('{batch}', 1, '{step}', '{status}', 0, 1, now())"
        )
    };
    refused(
        &app,
        &event("DANCE", "STARTED"),
        "provisioning_events_step_check",
    )
    .await;
    refused(
        &app,
        &event("SEED", "MAYBE"),
        "provisioning_events_status_check",
    )
    .await;
    accepted(&app, &job("RUNNING", "SEED")).await;
    accepted(&app, &event("SEED", "STARTED")).await;

    // What was accepted reads back as the typed states, over GraphQL as well.
    let shown = app
        .graphql(
            "query($id: ID!, $batch: ID!) { tenant(id: $id) { status } provisioningBatch(id: $batch) { kind status results { status } } }",
            json!({ "id": tenant, "batch": batch }),
            Some(&operator),
        )
        .await;
    assert_eq!(shown.data()["tenant"]["status"], "INACTIVE", "{}", shown.0);
    assert_eq!(shown.data()["provisioningBatch"]["kind"], "PROVISION");
    assert_eq!(
        shown.data()["provisioningBatch"]["results"][0]["status"],
        "RUNNING"
    );
}

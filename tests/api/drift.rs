//! Schema drift: schemas altered by hand are compared with the structure of their revision.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use tenantgraph::{
    primitives::schema_name::SchemaName,
    tenancy::migrator::{self, Target},
};

use crate::helpers::{TestApp, tenant_input};

const DRIFT: &str = r#"
query($id: ID!) {
  tenantDrift(tenantId: $id) {
    tenantId schemaName revision drifted
    differences { kind objectType name detail }
  }
}"#;

const REPORT: &str = r#"
{ driftReport { checked drifted tenants { tenantId schemaName revision drifted differences { kind objectType name } } } }"#;

const HEALTH: &str = "query($id: ID!) { tenantHealth(tenantId: $id) { status revisionMatches drifted missingTables } }";

async fn drift(app: &TestApp, token: &str, id: &Value) -> Value {
    app.graphql(DRIFT, json!({ "id": id }), Some(token))
        .await
        .data()["tenantDrift"]
        .clone()
}

/// The differences as (kind, objectType, name), sorted.
fn listed(drift: &Value) -> Vec<(String, String, String)> {
    let mut found: Vec<_> = drift["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap().to_owned(),
                d["objectType"].as_str().unwrap().to_owned(),
                d["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

fn difference(kind: &str, object_type: &str, name: &str) -> (String, String, String) {
    (kind.to_owned(), object_type.to_owned(), name.to_owned())
}

async fn alter(app: &TestApp, sql: &str) {
    app.db().execute_unprepared(sql).await.unwrap();
}

#[tokio::test]
async fn schemas_altered_by_hand_show_each_change_with_its_kind_and_name() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = app.create_tenant(&token, tenant_input("drifty.org")).await;
    let id = created["tenant"]["id"].clone();

    let fresh = drift(&app, &token, &id).await;
    assert_eq!(fresh["drifted"], false, "{fresh}");
    assert_eq!(fresh["differences"], json!([]));
    assert_eq!(fresh["schemaName"], "tenant_drifty_org");
    assert_eq!(
        fresh["revision"].as_str(),
        migration::tenant_migration_names()
            .last()
            .map(String::as_str)
    );
    let health = app.graphql(HEALTH, json!({ "id": id }), Some(&token)).await;
    assert_eq!(health.data()["tenantHealth"]["status"], "HEALTHY");
    assert_eq!(health.data()["tenantHealth"]["drifted"], false);

    alter(
        &app,
        "ALTER TABLE tenant_drifty_org.person ADD COLUMN nickname text",
    )
    .await;
    alter(&app, "DROP INDEX tenant_drifty_org.idx_person_lower_email").await;
    alter(
        &app,
        "ALTER TABLE tenant_drifty_org.person ALTER COLUMN first_name DROP NOT NULL",
    )
    .await;
    alter(
        &app,
        "ALTER TABLE tenant_drifty_org.person ALTER COLUMN notes TYPE varchar(20)",
    )
    .await;
    alter(
        &app,
        "ALTER TABLE tenant_drifty_org.person DROP CONSTRAINT fk_person_created_by",
    )
    .await;
    alter(&app, "DROP TABLE tenant_drifty_org.permissions CASCADE").await;
    alter(
        &app,
        "CREATE TABLE tenant_drifty_org.scratch (id int PRIMARY KEY)",
    )
    .await;

    let drifted = drift(&app, &token, &id).await;
    assert_eq!(drifted["drifted"], true);
    assert_eq!(
        listed(&drifted),
        vec![
            difference("CHANGED", "COLUMN", "person.first_name"),
            difference("CHANGED", "COLUMN", "person.notes"),
            difference("MISSING", "CONSTRAINT", "person.fk_person_created_by"),
            // CASCADE took the foreign key that pointed at the dropped table.
            difference(
                "MISSING",
                "CONSTRAINT",
                "role_permissions.fk_role_permissions_permission_id"
            ),
            difference("MISSING", "INDEX", "idx_person_lower_email"),
            difference("MISSING", "TABLE", "permissions"),
            difference("UNEXPECTED", "COLUMN", "person.nickname"),
            difference("UNEXPECTED", "TABLE", "scratch"),
        ],
        "{drifted}"
    );
    let details: Vec<&str> = drifted["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.contains(&"expected text not null, found text null"),
        "{details:?}"
    );
    assert!(
        details.contains(&"expected text null, found character varying(20) null"),
        "{details:?}"
    );
    // Definitions are compared without the schema's name, and never show it.
    assert!(
        details.iter().all(|d| !d.contains("tenant_drifty_org")),
        "{details:?}"
    );

    let health = app.graphql(HEALTH, json!({ "id": id }), Some(&token)).await;
    let health = &health.data()["tenantHealth"];
    assert_eq!(health["status"], "UNHEALTHY");
    assert_eq!(health["drifted"], true);
    assert_eq!(health["revisionMatches"], true);
    // The reference schemas were never committed: nothing of them is left.
    assert_eq!(
        app.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenantgraph_drift%'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_schema_dropped_by_hand_misses_every_table_of_its_revision() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = app.create_tenant(&token, tenant_input("gone.org")).await;
    let id = created["tenant"]["id"].clone();
    alter(&app, "DROP SCHEMA tenant_gone_org CASCADE").await;
    let gone = drift(&app, &token, &id).await;
    // The migrator's ledger is bookkeeping, not structure: it is never compared.
    let mut expected: Vec<_> = migration::TENANT_TABLES
        .iter()
        .filter(|table| **table != "seaql_migrations")
        .map(|table| difference("MISSING", "TABLE", table))
        .collect();
    expected.sort();
    assert_eq!(listed(&gone), expected, "{gone}");
    assert_eq!(
        gone["revision"].as_str(),
        migration::tenant_migration_names()
            .last()
            .map(String::as_str)
    );
}

#[tokio::test]
async fn tenants_compare_with_their_own_revision_and_the_report_lists_only_drifted_ones() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let names = migration::tenant_migration_names();
    let older = names[names.len() - 2].clone();
    let mut ids = Vec::new();
    for domain in ["old.org", "head.org", "broken.org"] {
        let created = app.create_tenant(&token, tenant_input(domain)).await;
        ids.push(created["tenant"]["id"].clone());
    }
    let moved = app
        .graphql(
            "mutation($id: ID!, $target: String!, $confirm: String) { runMigrations(tenantId: $id, targetRevision: $target, confirm: $confirm) { currentRevision } }",
            json!({ "id": ids[0], "target": older, "confirm": "tenant_old_org" }),
            Some(&token),
        )
        .await;
    assert_eq!(
        moved.data()["runMigrations"]["currentRevision"],
        older.as_str()
    );

    let old = drift(&app, &token, &ids[0]).await;
    assert_eq!(old["revision"], older.as_str());
    assert_eq!(old["drifted"], false, "{old}");

    // A head tenant lacking the last migration's column drifts; the older tenant does not.
    alter(
        &app,
        "ALTER TABLE tenant_broken_org.person DROP COLUMN external_ref",
    )
    .await;
    let report = app.graphql(REPORT, json!({}), Some(&token)).await;
    let report = &report.data()["driftReport"];
    assert_eq!(report["checked"], 3);
    assert_eq!(report["drifted"], 1);
    let tenants = report["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{report}");
    assert_eq!(tenants[0]["tenantId"], ids[2]);
    assert_eq!(
        listed(&tenants[0]),
        vec![
            difference("MISSING", "COLUMN", "person.external_ref"),
            difference("MISSING", "INDEX", "idx_person_external_ref"),
        ]
    );

    // The same column added by hand to the older tenant is drift there.
    alter(
        &app,
        "ALTER TABLE tenant_old_org.person ADD COLUMN external_ref text",
    )
    .await;
    let old = drift(&app, &token, &ids[0]).await;
    assert_eq!(
        listed(&old),
        vec![difference("UNEXPECTED", "COLUMN", "person.external_ref")]
    );
}

#[tokio::test]
async fn drift_is_for_operators_and_unknown_tenants_are_not_found() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let unknown = app
        .graphql(
            DRIFT,
            json!({ "id": uuid::Uuid::new_v4().to_string() }),
            Some(&token),
        )
        .await;
    assert_eq!(unknown.error_code(), "NOT_FOUND");
    let bad = app
        .graphql(DRIFT, json!({ "id": "nope" }), Some(&token))
        .await;
    assert_eq!(bad.error_code(), "BAD_USER_INPUT");

    let tenant = app.with_tenant("member.org").await;
    let as_tenant = app
        .graphql_with_key(REPORT, json!({}), &tenant.api_key)
        .await;
    assert_eq!(as_tenant.error_code(), "FORBIDDEN");
    let anonymous = app.graphql(REPORT, json!({}), None).await;
    assert_ne!(anonymous.error_code(), "");
    assert!(anonymous.0["data"].is_null() || anonymous.0["data"]["driftReport"].is_null());
}

#[tokio::test]
async fn the_fleet_report_works_on_a_pool_smaller_than_its_parallelism() {
    // Each check holds at most one connection at a time, and waits for a reference being built
    // without holding any: two connections serve eight checks at once.
    let app = TestApp::spawn_with(|env| {
        env.insert("DATABASE_MAX_CONNECTIONS".into(), "2".into());
        env.insert("MAX_CONCURRENT_OPERATIONS".into(), "8".into());
    })
    .await;
    let token = app.operator_token().await;
    for domain in ["pool-a.org", "pool-b.org", "pool-c.org", "pool-d.org"] {
        app.create_tenant(&token, tenant_input(domain)).await;
    }
    alter(
        &app,
        "DROP INDEX tenant_pool_c_org.idx_person_created_at_id",
    )
    .await;
    let report = app.graphql(REPORT, json!({}), Some(&token)).await;
    let report = &report.data()["driftReport"];
    assert_eq!(report["checked"], 4);
    assert_eq!(report["drifted"], 1);
    assert_eq!(report["tenants"][0]["schemaName"], "tenant_pool_c_org");
}

/// Every object of `schema` as one line each, the schema's own name cut out: relations,
/// columns, indexes, constraints, triggers and functions, the ledger included.
async fn catalog(app: &TestApp, schema: &str) -> Vec<String> {
    let rows = app
        .db()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT replace(kind || ' ' || name || ' ' || definition, $1 || '.', '') AS line FROM ( \
               SELECT 'relation' AS kind, c.relname::text AS name, c.relkind::text AS definition \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE n.nspname = $1 \
               UNION ALL \
               SELECT 'column', c.relname || '.' || a.attname, \
                      format_type(a.atttypid, a.atttypmod) \
                        || CASE WHEN a.attnotnull THEN ' not null' ELSE ' null' END \
                        || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                 LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
                WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v') \
               UNION ALL \
               SELECT 'index', c.relname, pg_get_indexdef(c.oid) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE n.nspname = $1 AND c.relkind IN ('i', 'I') \
               UNION ALL \
               SELECT 'constraint', r.relname || '.' || k.conname, pg_get_constraintdef(k.oid) \
                 FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid \
                 JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = $1 \
               UNION ALL \
               SELECT 'trigger', t.tgname, pg_get_triggerdef(t.oid) \
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                WHERE n.nspname = $1 AND NOT t.tgisinternal \
               UNION ALL \
               SELECT 'function', p.proname, pg_get_functiondef(p.oid) \
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                WHERE n.nspname = $1 \
             ) objects ORDER BY 1",
            [schema.into()],
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "line").unwrap())
        .collect()
}

async fn ledger(app: &TestApp, schema: &str) -> Vec<String> {
    app.db()
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT version FROM {schema}.seaql_migrations ORDER BY version"),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "version").unwrap())
        .collect()
}

#[tokio::test]
async fn a_provisioned_schema_has_the_catalog_and_ledger_of_one_migrated_step_by_step() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = app
        .create_tenant(&token, tenant_input("provisioned.org"))
        .await;
    let id = created["tenant"]["id"].clone();
    let provisioned = "tenant_provisioned_org";

    // The same revision reached by the migrator, one locked step and one ledger row at a time.
    let stepwise = SchemaName::parse("stepwise_reference").unwrap();
    alter(&app, "CREATE SCHEMA stepwise_reference").await;
    let reached = migrator::migrate_to(app.db(), &stepwise, &Target::Head)
        .await
        .unwrap();
    assert!(reached.at_head());

    let expected = catalog(&app, stepwise.as_str()).await;
    assert!(
        expected
            .iter()
            .any(|line| line.starts_with("relation seaql_migrations")),
        "{expected:?}"
    );
    assert_eq!(catalog(&app, provisioned).await, expected);
    let mut names = migration::tenant_migration_names();
    names.sort();
    assert_eq!(ledger(&app, provisioned).await, names);
    assert_eq!(ledger(&app, stepwise.as_str()).await, names);

    let fresh = drift(&app, &token, &id).await;
    assert_eq!(fresh["drifted"], false, "{fresh}");
    // The migrator reads its ledger as its own: a step down and back to head.
    app.migrate_tenant_down_and_up(id.as_str().unwrap(), &token)
        .await;
    assert_eq!(drift(&app, &token, &id).await["drifted"], false);
    assert_eq!(ledger(&app, provisioned).await, names);
    alter(&app, "DROP SCHEMA stepwise_reference CASCADE").await;
}

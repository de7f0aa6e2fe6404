//! Database servers: operators add, list and drain them; tenants are placed on them, routed to
//! them by the pin, kept apart across them, and a server that goes down affects only its own
//! tenants. Data servers are databases on a second cluster the harness starts beside the first.

use serde_json::{Value, json};

use crate::cli::{stdout, tenantgraph};
use crate::helpers::{
    CREATE_TENANT, TENANT_PASSWORD, TestApp, TestDatabase, cluster_root, free_port,
    start_logical_cluster, tenant_input,
};

pub const SERVERS: &str = "{ databaseServers { name state capacity tenantCount control } }";
pub const ADD_SERVER: &str = "mutation($input: AddDatabaseServerInput!) { addDatabaseServer(input: $input) { name state capacity tenantCount control } }";

/// The password part of a server URL, to look for where it must never be.
fn password_of(url: &str) -> String {
    url::Url::parse(url).unwrap().password().unwrap().to_owned()
}

#[tokio::test]
async fn operators_add_list_and_drain_servers_and_never_read_a_url_back() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let data = TestDatabase::create_on_second_server().await;

    let added = app
        .graphql(
            ADD_SERVER,
            json!({ "input": { "name": "second", "url": data.url, "capacity": 3 } }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        added.data()["addDatabaseServer"],
        json!({ "name": "second", "state": "ACTIVE", "capacity": 3, "tenantCount": 0, "control": false })
    );
    // The server got the registry mirror its tenants' pins read.
    let server = tenantgraph::db::open_pool(&data.url, 1).await.unwrap();
    let mirror = sea_orm::ConnectionTrait::query_one_raw(
        &server,
        sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT to_regclass('public.tenant_placements') IS NOT NULL AS present",
        ),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get::<bool>("", "present")
    .unwrap();
    assert!(mirror);
    server.close().await.unwrap();

    let listed = app.graphql(SERVERS, json!({}), Some(&operator)).await;
    assert_eq!(
        listed.data()["databaseServers"],
        json!([
            { "name": "control", "state": "ACTIVE", "capacity": null, "tenantCount": 0, "control": true },
            { "name": "second", "state": "ACTIVE", "capacity": 3, "tenantCount": 0, "control": false },
        ])
    );
    let drained = app
        .graphql(
            "mutation { drainDatabaseServer(name: \"second\") { name state } }",
            json!({}),
            Some(&operator),
        )
        .await;
    assert_eq!(
        drained.data()["drainDatabaseServer"],
        json!({ "name": "second", "state": "DRAINING" })
    );

    // Neither the schema, the audit trail nor any answer holds the URL's password.
    let password = password_of(&data.url);
    assert!(!listed.0.to_string().contains(&password));
    assert!(!added.0.to_string().contains(&password));
    let audited = app
        .scalar(&format!(
            "SELECT count(*) FROM public.audit_events WHERE detail::text LIKE '%{password}%'"
        ))
        .await;
    assert_eq!(audited, 0);
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.audit_events WHERE action IN ('server.add', 'server.state')")
            .await,
        2
    );
}

#[tokio::test]
async fn only_platform_operators_manage_servers() {
    let app = TestApp::spawn().await;
    let tenant = app.with_tenant("servers-guard.test").await;
    let data = TestDatabase::create_on_second_server().await;
    for token in [None, Some(tenant.admin.as_str())] {
        let listed = app.graphql(SERVERS, json!({}), token).await;
        assert!(matches!(
            listed.error_code(),
            "FORBIDDEN" | "UNAUTHENTICATED"
        ));
        let added = app
            .graphql(
                ADD_SERVER,
                json!({ "input": { "name": "second", "url": data.url } }),
                token,
            )
            .await;
        assert!(matches!(
            added.error_code(),
            "FORBIDDEN" | "UNAUTHENTICATED"
        ));
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.database_servers")
            .await,
        0
    );
    // A tenant user reads its tenant without the server it is placed on.
    let me = app
        .graphql(
            "{ me { tenant { domain } } }",
            json!({}),
            Some(&tenant.admin),
        )
        .await;
    assert_eq!(me.data()["me"]["tenant"]["domain"], "servers-guard.test");
}

#[tokio::test]
async fn adding_a_server_refuses_bad_input_and_servers_it_cannot_use() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let data = TestDatabase::create_on_second_server().await;
    let add = |input: Value| {
        let app = &app;
        let operator = operator.clone();
        async move {
            app.graphql(ADD_SERVER, json!({ "input": input }), Some(&operator))
                .await
        }
    };

    let refused =
        add(json!({ "name": "Bad Name", "url": "mysql://x@127.0.0.1/db", "capacity": -1 })).await;
    let mut fields = refused.error_fields();
    fields.sort();
    assert_eq!(fields, ["capacity", "name", "url"]);
    assert!(
        refused.0["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["extensions"]["code"] == "BAD_USER_INPUT")
    );

    for (name, url, says) in [
        ("control", data.url.clone(), "control database"),
        ("params", format!("{}?host=/tmp", data.url), "not allowed"),
        // Nothing listens on that loopback port.
        (
            "nobody",
            format!("postgres://postgres:x@127.0.0.1:{}/db", free_port()),
            "could not connect",
        ),
        (
            "wrongpw",
            data.url
                .replace(&password_of(&data.url), "not-the-password"),
            "credentials",
        ),
        // The control database (it holds the registry) is not a data server.
        ("itself", app.database.url.clone(), "registry"),
    ] {
        let refused = add(json!({ "name": name, "url": url })).await;
        assert_eq!(
            refused.error_code(),
            "BAD_USER_INPUT",
            "{name}: {:?}",
            refused.0
        );
        assert!(
            refused.error_message().contains(says),
            "{name}: {}",
            refused.error_message()
        );
        assert!(!refused.0.to_string().contains(&password_of(&data.url)));
    }
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.database_servers")
            .await,
        0
    );

    add(json!({ "name": "second", "url": data.url }))
        .await
        .data();
    let twice = add(json!({ "name": "second", "url": data.url })).await;
    assert_eq!(twice.error_code(), "CONFLICT");
    assert_eq!(twice.error_field(), Some("name"));
    let unknown = app
        .graphql(
            "mutation { drainDatabaseServer(name: \"nope\") { name } }",
            json!({}),
            Some(&operator),
        )
        .await;
    assert_eq!(unknown.error_code(), "NOT_FOUND");
}

pub const CREATE_PERSON: &str =
    "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id firstName } }";
const PEOPLE: &str = "{ people(first: 50) { nodes { firstName } } }";
const TENANT_SERVER: &str = "query($id: ID) { tenant(id: $id) { server status } }";

/// Adds `database` as server `name`, asserting success.
pub async fn add_server(app: &TestApp, operator: &str, name: &str, database: &TestDatabase) {
    app.graphql(
        ADD_SERVER,
        json!({ "input": { "name": name, "url": database.url } }),
        Some(operator),
    )
    .await
    .data();
}

/// The one value `sql` returns on the database at `url`.
pub async fn scalar_at<T: sea_orm::TryGetable>(url: &str, sql: &str) -> T {
    let pool = tenantgraph::db::open_pool(url, 1).await.unwrap();
    let value = sea_orm::ConnectionTrait::query_one_raw(
        &pool,
        sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql),
    )
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<T>(0)
    .unwrap();
    pool.close().await.unwrap();
    value
}

/// What the pins of tenant `id` on the server at `url` check.
pub async fn placement_status(url: &str, id: &str) -> String {
    scalar_at::<String>(
        url,
        &format!("SELECT status FROM public.tenant_placements WHERE id = '{id}'"),
    )
    .await
}

pub async fn schema_exists_at(url: &str, schema: &str) -> bool {
    scalar_at::<bool>(
        url,
        &format!("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{schema}')"),
    )
    .await
}

pub async fn first_names(app: &TestApp, token: &str) -> Vec<String> {
    let people = app.graphql(PEOPLE, json!({}), Some(token)).await;
    people.data()["people"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|person| person["firstName"].as_str().unwrap().to_owned())
        .collect()
}

pub async fn create_person(app: &TestApp, token: &str, first_name: &str) {
    let input = json!({ "input": { "firstName": first_name, "lastName": "Placed" } });
    app.graphql(CREATE_PERSON, input, Some(token)).await.data();
}

#[tokio::test]
async fn tenants_go_to_the_server_asked_for_or_the_least_loaded_one_with_room() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let data = TestDatabase::create_on_second_server().await;
    app.graphql(
        ADD_SERVER,
        json!({ "input": { "name": "second", "url": data.url, "capacity": 2 } }),
        Some(&operator),
    )
    .await
    .data();

    let mut input = tenant_input("placed-1.test");
    input["server"] = json!("second");
    let first = app.create_tenant(&operator, input).await;
    let schema = first["tenant"]["schemaName"].as_str().unwrap();
    assert_eq!(first["tenant"]["status"], "ACTIVE");
    assert!(schema_exists_at(&data.url, schema).await);
    assert!(!schema_exists_at(&app.database.url, schema).await);
    assert_eq!(
        scalar_at::<String>(
            &data.url,
            &format!("SELECT status FROM public.tenant_placements WHERE schema_name = '{schema}'")
        )
        .await,
        "ACTIVE"
    );
    let read = app
        .graphql(
            TENANT_SERVER,
            json!({ "id": first["tenant"]["id"] }),
            Some(&operator),
        )
        .await;
    assert_eq!(read.data()["tenant"]["server"], "second");

    // Unplaced: the least loaded server with room, the control database on a tie.
    let mut placed = Vec::new();
    for domain in ["placed-2.test", "placed-3.test", "placed-4.test"] {
        let created = app.create_tenant(&operator, tenant_input(domain)).await;
        let read = app
            .graphql(
                TENANT_SERVER,
                json!({ "id": created["tenant"]["id"] }),
                Some(&operator),
            )
            .await;
        placed.push(read.data()["tenant"]["server"].as_str().unwrap().to_owned());
    }
    assert_eq!(placed, ["control", "control", "second"]);

    // Full, unknown, draining: refused on `server`, nothing made.
    let tenants_before = app.scalar("SELECT count(*) FROM public.tenants").await;
    for (server, says) in [("second", "capacity"), ("nowhere", "no such")] {
        let mut input = tenant_input("refused.test");
        input["server"] = json!(server);
        let refused = app
            .graphql(CREATE_TENANT, json!({ "input": input }), Some(&operator))
            .await;
        assert_eq!(refused.error_code(), "BAD_USER_INPUT");
        assert_eq!(refused.error_field(), Some("server"));
        assert!(
            refused.error_message().contains(says),
            "{}",
            refused.error_message()
        );
    }
    app.graphql(
        "mutation { setDatabaseServerState(name: \"second\", state: DRAINING) { state } }",
        json!({}),
        Some(&operator),
    )
    .await
    .data();
    let mut input = tenant_input("refused.test");
    input["server"] = json!("second");
    let refused = app
        .graphql(CREATE_TENANT, json!({ "input": input }), Some(&operator))
        .await;
    assert!(refused.error_message().contains("DRAINING"));
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants").await,
        tenants_before
    );
    let listed = app.graphql(SERVERS, json!({}), Some(&operator)).await;
    assert_eq!(listed.data()["databaseServers"][0]["tenantCount"], 2);
    assert_eq!(listed.data()["databaseServers"][1]["tenantCount"], 2);
}

#[tokio::test]
async fn a_tenant_on_another_server_is_served_there_and_kept_apart_from_the_others() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let data = TestDatabase::create_on_second_server().await;
    add_server(&app, &operator, "second", &data).await;
    let home = app.with_tenant("home.test").await;
    let away = app.with_tenant_on("away.test", "second").await;

    create_person(&app, &home.admin, "Homer").await;
    create_person(&app, &away.admin, "Awaya").await;
    assert_eq!(first_names(&app, &home.admin).await, ["Homer"]);
    assert_eq!(first_names(&app, &away.member).await, ["Awaya"]);
    // The API key reaches the same rows, on the tenant's server.
    let by_key = app.graphql_with_key(PEOPLE, json!({}), &away.api_key).await;
    assert_eq!(by_key.data()["people"]["nodes"][0]["firstName"], "Awaya");
    assert_eq!(
        scalar_at::<i64>(
            &data.url,
            &format!("SELECT count(*) FROM {}.person", away.schema)
        )
        .await,
        1
    );

    // A schema of the home tenant's name on the other server, holding other rows: the home
    // tenant is still served from its own server only.
    let intruder = tenantgraph::db::open_pool(&data.url, 1).await.unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(
        &intruder,
        &format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.person AS SELECT * FROM {a}.person; \
             UPDATE {s}.person SET first_name = 'Intruder'; \
             INSERT INTO public.tenant_placements VALUES ('{id}', '{s}', 'ACTIVE')",
            s = home.schema,
            a = away.schema,
            id = uuid::Uuid::new_v4(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(first_names(&app, &home.viewer).await, ["Homer"]);

    // A token naming one tenant with the other's schema (signed with the server's own key) is
    // refused, whichever way round.
    let forged = |tenant: &str, schema: &str| {
        app.state
            .jwt
            .issue(
                tenantgraph::auth::jwt::TokenKind::TenantUser,
                uuid::Uuid::new_v4(),
                uuid::Uuid::new_v4(),
                Some((
                    tenant.parse().unwrap(),
                    schema.to_owned(),
                    vec!["admin".into()],
                )),
            )
            .unwrap()
            .token
    };
    for token in [
        forged(&home.id, &away.schema),
        forged(&away.id, &home.schema),
    ] {
        let refused = app.graphql(PEOPLE, json!({}), Some(&token)).await;
        assert_eq!(refused.error_code(), "UNAUTHENTICATED");
    }

    // The pin on the other server checks its own placements: another tenant's id with this
    // schema, or this tenant once its placement is fenced, pins nothing.
    let pool = app.state.servers.pool(Some("second")).await.unwrap();
    let away_id: uuid::Uuid = away.id.parse().unwrap();
    let away_schema =
        tenantgraph::primitives::schema_name::SchemaName::parse(&away.schema).unwrap();
    let home_id: uuid::Uuid = home.id.parse().unwrap();
    let pin = |id| tenantgraph::db::pinned::begin_as_owner(&pool, id, &away_schema);
    assert!(pin(away_id).await.unwrap().is_some());
    assert!(pin(home_id).await.unwrap().is_none());

    // Sessions: revoking and logging out end them for a tenant on any server.
    let revoke = app
        .graphql(
            "mutation($id: ID!) { revokeSessions(userId: $id) }",
            json!({ "id": member_id(&app, &away).await }),
            Some(&away.admin),
        )
        .await;
    assert_eq!(revoke.data()["revokeSessions"], 1);
    let ended = app.graphql(PEOPLE, json!({}), Some(&away.member)).await;
    assert_eq!(ended.error_code(), "UNAUTHENTICATED");

    // Deactivated: fenced on its server (and refused) before the registry says so.
    app.graphql(
        "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
        json!({ "id": away.id }),
        Some(&operator),
    )
    .await
    .data();
    assert_eq!(placement_status(&data.url, &away.id).await, "INACTIVE");
    assert!(pin(away_id).await.unwrap().is_none());
    let refused = app.graphql_with_key(PEOPLE, json!({}), &away.api_key).await;
    assert_eq!(refused.error_code(), "UNAUTHENTICATED");
    assert_eq!(first_names(&app, &home.admin).await, ["Homer"]);

    // Deleted with its schema: gone from its server, placement and all.
    app.graphql(
        "mutation($id: ID!, $confirm: String) { deleteTenant(id: $id, dropSchema: true, confirm: $confirm) { schemaDropped } }",
        json!({ "id": away.id, "confirm": away.schema }),
        Some(&operator),
    )
    .await
    .data();
    assert!(!schema_exists_at(&data.url, &away.schema).await);
    assert_eq!(
        scalar_at::<i64>(
            &data.url,
            &format!(
                "SELECT count(*) FROM public.tenant_placements WHERE id = '{}'",
                away.id
            )
        )
        .await,
        0
    );
}

async fn member_id(app: &TestApp, tenant: &crate::helpers::TestTenant) -> String {
    let me = app
        .graphql("{ me { user { id } } }", json!({}), Some(&tenant.member))
        .await;
    me.data()["me"]["user"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_server_that_goes_down_takes_only_its_own_tenants_with_it_until_it_is_back() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    // A cluster of this test's own, to stop and start again.
    let data_dir = cluster_root().join(format!("down-{}", uuid::Uuid::new_v4().simple()));
    let cluster = start_logical_cluster(data_dir.clone()).await;
    let pattern = cluster.url("{db}");
    let data = TestDatabase::create_empty(&pattern).await;
    add_server(&app, &operator, "fragile", &data).await;
    let home = app.with_tenant("steady.test").await;
    let away = app.with_tenant_on("fragile.test", "fragile").await;
    create_person(&app, &away.admin, "Before").await;

    cluster.stop().await.unwrap();
    for refused in [
        app.graphql(PEOPLE, json!({}), Some(&away.admin)).await,
        app.graphql_with_key(PEOPLE, json!({}), &away.api_key).await,
        app.tenant_login("fragile.test", "admin@fragile.test", TENANT_PASSWORD)
            .await,
    ] {
        assert_eq!(
            refused.error_code(),
            "SERVER_UNAVAILABLE",
            "{:?}",
            refused.0
        );
        assert_eq!(refused.0["errors"][0]["extensions"]["retryAfterSeconds"], 2);
    }
    // Turning it off cannot be made sure of on its server: refused, and it stays as it was.
    let deactivate = app
        .graphql(
            "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
            json!({ "id": away.id }),
            Some(&operator),
        )
        .await;
    assert_eq!(deactivate.error_code(), "SERVER_UNAVAILABLE");
    let read = app
        .graphql(TENANT_SERVER, json!({ "id": away.id }), Some(&operator))
        .await;
    assert_eq!(
        read.data()["tenant"],
        json!({ "server": "fragile", "status": "ACTIVE" })
    );
    // The others go on.
    create_person(&app, &home.admin, "Still").await;
    assert_eq!(first_names(&app, &home.member).await, ["Still"]);
    let health = app.http.get(app.url("/health/db")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(
        health["servers"],
        json!([
            { "name": "control", "state": "ACTIVE", "database": "up" },
            { "name": "fragile", "state": "ACTIVE", "database": "down" },
        ])
    );

    let cluster = start_logical_cluster(data_dir.clone()).await;
    let mut names = Vec::new();
    for _ in 0..40 {
        let answer = app.graphql(PEOPLE, json!({}), Some(&away.admin)).await;
        if answer.0.get("errors").is_none_or(Value::is_null) {
            names = first_names(&app, &away.admin).await;
            break;
        }
        assert_eq!(answer.error_code(), "SERVER_UNAVAILABLE");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(names, ["Before"]);
    drop(app);
    drop(data);
    cluster.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn migrations_health_and_drift_work_on_the_tenants_server_and_fleets_report_per_server() {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let data = TestDatabase::create_on_second_server().await;
    add_server(&app, &operator, "second", &data).await;
    let home = app.with_tenant("fleet-home.test").await;
    let away = app.with_tenant_on("fleet-away.test", "second").await;

    let checks = "query($id: ID!) { \
        migrationStatus(tenantId: $id) { currentRevision schemaProvisioned migrationsApplied } \
        tenantHealth(tenantId: $id) { status schemaExists revisionMatches dbAccessible } \
        tenantDrift(tenantId: $id) { drifted } }";
    let head = migration::tenant_migration_names();
    let previous = head[head.len() - 2].clone();
    let checked = app
        .graphql(checks, json!({ "id": away.id }), Some(&operator))
        .await;
    assert_eq!(
        checked.data()["migrationStatus"],
        json!({ "currentRevision": head.last(), "schemaProvisioned": true, "migrationsApplied": true })
    );
    assert_eq!(
        checked.data()["tenantHealth"],
        json!({ "status": "HEALTHY", "schemaExists": true, "revisionMatches": true, "dbAccessible": true })
    );
    assert_eq!(checked.data()["tenantDrift"]["drifted"], false);

    // A fleet step down: both tenants parked below head, the one away fenced on its server.
    let fleet = "mutation($to: String!, $ids: [ID!]) { migrateTenants(targetRevision: $to, tenantIds: $ids, confirm: $to, options: { wait: true }) { status results { domain server status } summary { byServer { server successful failed } } } }";
    let down = app
        .graphql(
            fleet,
            json!({ "to": previous, "ids": [home.id, away.id] }),
            Some(&operator),
        )
        .await;
    let batch = &down.data()["migrateTenants"];
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(
        batch["summary"]["byServer"],
        json!([
            { "server": "control", "successful": 1, "failed": 0 },
            { "server": "second", "successful": 1, "failed": 0 },
        ])
    );
    assert_eq!(placement_status(&data.url, &away.id).await, "INACTIVE");
    assert_eq!(
        scalar_at::<i64>(
            &data.url,
            &format!("SELECT count(*) FROM {}.seaql_migrations", away.schema)
        )
        .await,
        head.len() as i64 - 1
    );
    let parked = app.graphql_with_key(PEOPLE, json!({}), &away.api_key).await;
    assert_eq!(parked.error_code(), "UNAUTHENTICATED");

    // Back to head: served again from its server.
    let up = app
        .graphql(
            fleet,
            json!({ "to": "head", "ids": [home.id, away.id] }),
            Some(&operator),
        )
        .await;
    assert_eq!(up.data()["migrateTenants"]["status"], "SUCCEEDED");
    let results = &up.data()["migrateTenants"]["results"];
    assert_eq!(
        results[1],
        json!({ "domain": "fleet-away.test", "server": "second", "status": "SUCCEEDED" })
    );
    create_person(&app, &away.admin, "Migrated").await;
    assert_eq!(first_names(&app, &away.admin).await, ["Migrated"]);

    // Updated as any tenant: turned off and on again through updateTenant, fenced and released
    // on its server.
    let update = "mutation($id: ID!, $input: UpdateTenantInput!) { updateTenant(id: $id, input: $input) { tenantName status } }";
    for (status, answer) in [("INACTIVE", "UNAUTHENTICATED"), ("ACTIVE", "")] {
        let input = json!({ "tenantName": format!("Away {status}"), "status": status });
        let updated = app
            .graphql(
                update,
                json!({ "id": away.id, "input": input }),
                Some(&operator),
            )
            .await;
        assert_eq!(updated.data()["updateTenant"]["status"], status);
        let read = app.graphql_with_key(PEOPLE, json!({}), &away.api_key).await;
        if answer.is_empty() {
            read.data();
        } else {
            assert_eq!(read.error_code(), answer);
        }
        assert_eq!(placement_status(&data.url, &away.id).await, status);
    }
    let report = app
        .graphql(
            "{ driftReport { checked drifted } }",
            json!({}),
            Some(&operator),
        )
        .await;
    assert_eq!(
        report.data()["driftReport"],
        json!({ "checked": 2, "drifted": 0 })
    );
}

#[tokio::test]
async fn a_batch_places_its_tenants_and_a_server_past_the_connection_cap_is_unavailable() {
    // The control database's five connections and its five for gated reads, and not one more
    // for any other server.
    let app = TestApp::spawn_with(|env| {
        env.insert("DATABASE_TOTAL_MAX_CONNECTIONS".into(), "10".into());
    })
    .await;
    let operator = app.operator_token().await;
    let data = TestDatabase::create_on_second_server().await;
    add_server(&app, &operator, "second", &data).await;

    let mut away = tenant_input("capped-away.test");
    away["server"] = json!("second");
    let batch = app
        .graphql(
            "mutation($tenants: [CreateTenantInput!]!) { provisionTenants(tenants: $tenants, options: { wait: true }) { status results { domain server status error { code } } summary { byServer { server successful failed } } } }",
            json!({ "tenants": [tenant_input("capped-home.test"), away] }),
            Some(&operator),
        )
        .await;
    let batch = &batch.data()["provisionTenants"];
    assert_eq!(batch["status"], "PARTIALLY_FAILED", "{batch}");
    assert_eq!(
        batch["results"][0],
        json!({ "domain": "capped-home.test", "server": "control", "status": "SUCCEEDED", "error": null })
    );
    assert_eq!(batch["results"][1]["status"], "FAILED");
    assert_eq!(batch["results"][1]["error"]["code"], "SERVER_UNAVAILABLE");
    assert_eq!(
        batch["summary"]["byServer"],
        json!([{ "server": "control", "successful": 1, "failed": 0 }])
    );
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE domain = 'capped-away.test'")
            .await,
        0
    );
}

#[tokio::test]
async fn the_cli_adds_lists_and_drains_servers_without_printing_a_url() {
    let app = TestApp::spawn().await;
    let data = TestDatabase::create_on_second_server().await;
    let password = password_of(&data.url);

    let added = stdout(&tenantgraph(
        &app,
        &[
            "servers",
            "add",
            "--name",
            "cli-server",
            "--url",
            &data.url,
            "--capacity",
            "4",
        ],
    ));
    assert!(
        added.contains("added database server cli-server"),
        "{added}"
    );
    let listed = stdout(&tenantgraph(&app, &["servers", "list"]));
    let row: Vec<&str> = listed
        .lines()
        .find(|line| line.starts_with("cli-server"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row, ["cli-server", "ACTIVE", "4", "0"]);
    assert!(listed.lines().any(|line| line.starts_with("control")));
    let drained = stdout(&tenantgraph(
        &app,
        &["servers", "drain", "--name", "cli-server"],
    ));
    assert!(drained.contains("DRAINING"), "{drained}");

    let refused = tenantgraph(
        &app,
        &[
            "servers",
            "add",
            "--name",
            "again",
            "--url",
            &format!("{}?host=/tmp", data.url),
        ],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr).into_owned()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(said.contains("not allowed"), "{said}");
    for output in [&added, &listed, &drained, &said] {
        assert!(!output.contains(&password));
    }
}

#[tokio::test]
async fn a_tenant_on_another_server_is_backed_up_from_there_and_restores_onto_the_control_database()
{
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let data = TestDatabase::create_on_second_server().await;
    add_server(&app, &operator, "second", &data).await;
    let away = app.with_tenant_on("kept-away.test", "second").await;
    create_person(&app, &away.admin, "Kept").await;

    let dir = std::env::temp_dir().join(format!("tenantgraph-servers-{}", app.database.name));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("away.backup");
    let file = file.to_str().unwrap();
    stdout(&tenantgraph(
        &app,
        &[
            "tenants",
            "backup",
            "--tenant",
            "kept-away.test",
            "--out",
            file,
        ],
    ));
    let restored = stdout(&tenantgraph(
        &app,
        &[
            "tenants",
            "restore",
            "--file",
            file,
            "--as",
            "kept-copy.test",
        ],
    ));
    let key = crate::backup::printed_key(&restored);
    let people = app.graphql_with_key(PEOPLE, json!({}), &key).await;
    assert_eq!(people.data()["people"]["nodes"][0]["firstName"], "Kept");
    let copy = app
        .graphql(
            "{ tenant(domain: \"kept-copy.test\") { server schemaName } }",
            json!({}),
            Some(&operator),
        )
        .await;
    assert_eq!(copy.data()["tenant"]["server"], "control");
    let schema = copy.data()["tenant"]["schemaName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(schema_exists_at(&app.database.url, &schema).await);
    std::fs::remove_dir_all(&dir).unwrap();
}

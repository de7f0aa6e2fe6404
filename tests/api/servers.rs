//! Database servers: operators add, list and drain them; tenants are placed on them, routed to
//! them by the pin, kept apart across them, and a server that goes down affects only its own
//! tenants. Data servers are databases on a second cluster the harness starts beside the first.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, free_port};

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

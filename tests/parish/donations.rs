//! Donations: provisioned, cloned, migrated down and up across the fleet, isolated, guarded by
//! their permissions and batched.

use std::collections::HashMap;

use rand::rngs::StdRng;
use serde_json::{Value, json};
use tenantgraph::app::TenantGraph;

use crate::{
    helpers::{self, TestApp, TestTenant, tenant_input},
    isolation_property::{
        Credential, Rows, no_credential_sees_or_changes_another_tenants_rows, nodes_by_id,
    },
    parish,
};

const CREATE_DONATION: &str = "mutation($input: CreateDonationInput!) { createDonation(input: $input) { id amountCents donorName person { id } } }";
const DONATIONS: &str = "{ donations(first: 100) { totalCount nodes { id amountCents donorName person { id lastName } } } }";
const CREATE_PERSON: &str =
    "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id } }";
const MIGRATE: &str = r#"
mutation($target: String!, $confirm: String) {
  migrateTenants(targetRevision: $target, confirm: $confirm, options: { wait: true }) {
    status summary { successful failed }
  }
}"#;
const HEALTH: &str = "query($id: ID!) { tenantHealth(tenantId: $id) { status missingTables revisionMatches drifted } }";

/// The parish server on a database of its own.
async fn spawn(configure: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    TestApp::spawn_app(&parish::tenantgraph().unwrap(), configure).await
}

async fn create_donation(app: &TestApp, token: &str, input: Value) -> helpers::Gql {
    app.graphql(CREATE_DONATION, json!({ "input": input }), Some(token))
        .await
}

async fn create_person(app: &TestApp, token: &str, last_name: &str) -> String {
    app.graphql(
        CREATE_PERSON,
        json!({ "input": { "firstName": "Ann", "lastName": last_name } }),
        Some(token),
    )
    .await
    .data()["createPerson"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The permission codes of each role of the tenant.
async fn role_permissions(app: &TestApp, tenant: &TestTenant) -> HashMap<String, Vec<String>> {
    let roles = app
        .graphql(
            "{ roles { name permissions } }",
            json!({}),
            Some(&tenant.admin),
        )
        .await;
    roles.data()["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| {
            let codes = role["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|code| code.as_str().unwrap().to_owned())
                .collect();
            (role["name"].as_str().unwrap().to_owned(), codes)
        })
        .collect()
}

async fn has_donations_table(app: &TestApp, tenant: &TestTenant) -> bool {
    app.scalar(&format!(
        "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename = 'donations'",
        tenant.schema
    ))
    .await
        == 1
}

#[tokio::test]
async fn a_new_parish_has_donations_with_their_permissions_and_a_clone_copies_them() {
    let app = spawn(|_| {}).await;
    let tenant = app.with_tenant("stmarys.church").await;
    let names = migration::tenant_migration_names();
    assert_eq!(
        names.last().map(String::as_str),
        Some("m20261206_000001_create_donations")
    );
    assert!(has_donations_table(&app, &tenant).await);

    let health = app
        .graphql(HEALTH, json!({ "id": tenant.id }), Some(&tenant.operator))
        .await;
    assert_eq!(
        health.data()["tenantHealth"],
        json!({ "status": "HEALTHY", "missingTables": [], "revisionMatches": true, "drifted": false })
    );
    let roles = role_permissions(&app, &tenant).await;
    let holds = |role: &str, code: &str| roles[role].iter().any(|c| c == code);
    assert!(holds("admin", "donations:write") && holds("member", "donations:write"));
    assert!(!holds("viewer", "donations:write") && holds("viewer", "donations:read"));

    let person = create_person(&app, &tenant.admin, "Gift").await;
    let made = create_donation(
        &app,
        &tenant.member,
        json!({ "amountCents": 2500, "donorName": "Ann Gift", "personId": person }),
    )
    .await;
    assert_eq!(made.data()["createDonation"]["amountCents"], 2500);
    assert_eq!(made.data()["createDonation"]["person"]["id"], json!(person));
    // The tenant's API key has the application's permissions in its default scope.
    let by_key = app
        .graphql_with_key("{ donations { totalCount } }", json!({}), &tenant.api_key)
        .await;
    assert_eq!(by_key.data()["donations"]["totalCount"], 1);

    // A clone with its data has the donation, still linked to its person.
    let mut input = tenant_input("stjohns.church");
    input["apiKeyPermissions"] = json!(["donations:read", "people:read"]);
    let cloned = app
        .graphql(
            "mutation($source: ID!, $input: CreateTenantInput!) { cloneTenant(sourceTenantId: $source, input: $input, includeData: true) { apiKey } }",
            json!({ "source": tenant.id, "input": input }),
            Some(&tenant.operator),
        )
        .await;
    let clone_key = cloned.data()["cloneTenant"]["apiKey"].as_str().unwrap();
    let copied = app.graphql_with_key(DONATIONS, json!({}), clone_key).await;
    let nodes = &copied.data()["donations"]["nodes"];
    assert_eq!(nodes[0]["donorName"], "Ann Gift");
    assert_eq!(nodes[0]["person"]["id"], json!(person));
}

#[tokio::test]
async fn a_fleet_migration_takes_the_donations_down_and_up_again() {
    let app = spawn(|_| {}).await;
    let tenant = app.with_tenant("stmarys.church").await;
    create_donation(
        &app,
        &tenant.admin,
        json!({ "amountCents": 100, "donorName": "Before" }),
    )
    .await
    .data();
    let names = migration::tenant_migration_names();
    let built_in_head = names[names.len() - 2].clone();

    // The application's step renders like the built-in ones: the fleet moves each tenant in
    // one round trip.
    let schema = tenantgraph::primitives::schema_name::SchemaName::parse(&tenant.schema).unwrap();
    for (from, to) in [
        (names.len(), names.len() - 1),
        (names.len() - 1, names.len()),
    ] {
        assert!(
            tenantgraph::tenancy::rendered::script(&schema, from, to, "SELECT 1")
                .await
                .is_some()
        );
    }

    let down = app
        .graphql(
            MIGRATE,
            json!({ "target": built_in_head, "confirm": built_in_head }),
            Some(&tenant.operator),
        )
        .await;
    assert_eq!(
        down.data()["migrateTenants"]["status"],
        "SUCCEEDED",
        "{}",
        down.0
    );
    assert_eq!(down.data()["migrateTenants"]["summary"]["successful"], 1);
    assert!(!has_donations_table(&app, &tenant).await);
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM {}.permissions WHERE code LIKE 'donations:%'",
            tenant.schema
        ))
        .await,
        0
    );

    let up = app
        .graphql(MIGRATE, json!({ "target": "head" }), Some(&tenant.operator))
        .await;
    assert_eq!(
        up.data()["migrateTenants"]["status"],
        "SUCCEEDED",
        "{}",
        up.0
    );
    assert_eq!(up.data()["migrateTenants"]["summary"]["successful"], 1);
    assert!(has_donations_table(&app, &tenant).await);
    // The table comes back empty (its rows went with it), with its permissions and checks.
    let roles = role_permissions(&app, &tenant).await;
    assert!(roles["member"].iter().any(|code| code == "donations:write"));
    let listed = app
        .graphql(DONATIONS, json!({}), Some(&tenant.member))
        .await;
    assert_eq!(listed.data()["donations"]["totalCount"], 0);
    let after = create_donation(
        &app,
        &tenant.member,
        json!({ "amountCents": 300, "donorName": "After" }),
    )
    .await;
    assert_eq!(after.data()["createDonation"]["donorName"], "After");
    let current = app
        .scalar(&format!(
            "SELECT count(*) FROM public.tenants WHERE id = '{}' AND current_revision = '{}'",
            tenant.id,
            names.last().unwrap()
        ))
        .await;
    assert_eq!(current, 1);
}

/// Donations, labelled by their donor's name.
struct Donations;

impl Rows for Donations {
    async fn create(&self, app: &TestApp, credential: &Credential, label: &str) -> String {
        let created = credential
            .call(
                app,
                CREATE_DONATION,
                json!({ "input": { "amountCents": 500, "donorName": label } }),
            )
            .await;
        created.data()["createDonation"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn list(&self, app: &TestApp, credential: &Credential) -> (HashMap<String, String>, u64) {
        let listed = credential.call(app, DONATIONS, json!({})).await;
        let donations = &listed.data()["donations"];
        (
            nodes_by_id(donations, "donorName"),
            donations["totalCount"].as_u64().unwrap(),
        )
    }

    async fn attack(&self, app: &TestApp, credential: &Credential, foreign: &str, _: &mut StdRng) {
        let read = credential
            .call(
                app,
                "query($id: ID!) { donation(id: $id) { id } }",
                json!({ "id": foreign }),
            )
            .await;
        assert!(
            read.0["data"]["donation"].is_null(),
            "another tenant's donation must not be readable: {}",
            read.0
        );
    }
}

#[tokio::test]
async fn no_credential_ever_sees_or_changes_another_tenants_donations() {
    let app = spawn(|_| {}).await;
    no_credential_sees_or_changes_another_tenants_rows(&app, &Donations).await;
}

#[tokio::test]
async fn recording_a_donation_needs_donations_write_and_valid_input() {
    let app = spawn(|_| {}).await;
    let tenant = app.with_tenant("stmarys.church").await;
    let other = app.with_tenant("stpauls.church").await;
    let valid = json!({ "amountCents": 1000, "donorName": "Viewer" });

    let refused = create_donation(&app, &tenant.viewer, valid.clone()).await;
    assert_eq!(refused.error_code(), "FORBIDDEN", "{}", refused.0);
    assert!(refused.error_message().contains("donations:write"));
    let anonymous = app
        .graphql(CREATE_DONATION, json!({ "input": valid }), None)
        .await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
    let operator = create_donation(&app, &tenant.operator, valid.clone()).await;
    assert_eq!(operator.error_code(), "FORBIDDEN");
    // Reading needs donations:read, which viewers have.
    let read = app
        .graphql(DONATIONS, json!({}), Some(&tenant.viewer))
        .await;
    assert_eq!(read.data()["donations"]["totalCount"], 0);

    for (input, field) in [
        (
            json!({ "amountCents": 0, "donorName": "Zero" }),
            "amountCents",
        ),
        (
            json!({ "amountCents": -5, "donorName": "Minus" }),
            "amountCents",
        ),
        (json!({ "amountCents": 5, "donorName": "  " }), "donorName"),
        (
            json!({ "amountCents": 5, "donorName": "x".repeat(201) }),
            "donorName",
        ),
        (
            json!({ "amountCents": 5, "donorName": "Bad id", "personId": "nope" }),
            "personId",
        ),
    ] {
        let bad = create_donation(&app, &tenant.member, input).await;
        assert_eq!(bad.error_code(), "BAD_USER_INPUT", "{}", bad.0);
        assert_eq!(bad.error_field(), Some(field), "{}", bad.0);
    }
    // Another parish's person is not a person of this one.
    let foreign_person = create_person(&app, &other.admin, "Elsewhere").await;
    let foreign = create_donation(
        &app,
        &tenant.member,
        json!({ "amountCents": 5, "donorName": "Foreign", "personId": foreign_person }),
    )
    .await;
    assert_eq!(foreign.error_code(), "BAD_USER_INPUT", "{}", foreign.0);
    assert_eq!(foreign.error_field(), Some("personId"));

    // Nothing was recorded by any refused attempt.
    let listed = app.graphql(DONATIONS, json!({}), Some(&tenant.admin)).await;
    assert_eq!(listed.data()["donations"]["totalCount"], 0);
    let made = create_donation(&app, &tenant.member, valid).await;
    assert_eq!(made.data()["createDonation"]["donorName"], "Viewer");
}

#[tokio::test]
async fn donations_with_their_people_cost_the_same_statements_for_any_page_size() {
    let app = spawn(helpers::count_statements).await;
    let tenant = app.with_tenant("stmarys.church").await;
    let query = "{ donations(first: 50) { nodes { donorName person { lastName } } } }";
    let mut statements = Vec::new();
    for size in [2, 12] {
        while app
            .graphql(DONATIONS, json!({}), Some(&tenant.admin))
            .await
            .data()["donations"]["totalCount"]
            .as_u64()
            .unwrap()
            < size
        {
            let last_name = format!("Donor{}", uuid::Uuid::new_v4().simple());
            let person = create_person(&app, &tenant.admin, &last_name).await;
            create_donation(
                &app,
                &tenant.admin,
                json!({ "amountCents": 700, "donorName": last_name, "personId": person }),
            )
            .await
            .data();
        }
        let response = app.graphql(query, json!({}), Some(&tenant.admin)).await;
        let nodes = response.data()["donations"]["nodes"].as_array().unwrap();
        assert_eq!(nodes.len() as u64, size);
        assert!(
            nodes
                .iter()
                .all(|node| node["person"]["lastName"] == node["donorName"]),
            "{}",
            response.0
        );
        statements.push(response.0["extensions"]["sqlStatements"].as_u64().unwrap());
    }
    // One page read and one batch of people (each with its pinning BEGIN), whatever the size.
    assert_eq!(statements[0], statements[1], "{statements:?}");
    assert!(statements[0] <= 4, "{statements:?}");
}

#[tokio::test]
async fn a_second_different_application_in_the_same_process_is_refused() {
    // The parish is this process's application (whichever test gets here first).
    parish::tenantgraph().unwrap();
    parish::tenantgraph().expect("the same application again is fine");
    let other = TenantGraph::builder()
        .tenant_migrations(Vec::new, &["ledger_entries"])
        .build();
    assert!(other.is_err());
    // A field the built-in schema has cannot be added again.
    #[derive(Default)]
    struct Shadowing;
    #[async_graphql::Object]
    impl Shadowing {
        async fn people(&self) -> bool {
            true
        }
    }
    let shadowing = TenantGraph::builder().query::<Shadowing>().build();
    assert!(
        shadowing
            .err()
            .is_some_and(|err| err.to_string().contains("Query.people"))
    );
}

#[tokio::test]
async fn template_roles_can_grant_the_parish_permissions() {
    let app = spawn(|_| {}).await;
    let operator = app.operator_token().await;
    let create_template = "mutation($input: TenantTemplateInput!) { createTenantTemplate(input: $input) { roles { name permissions } } }";
    let unknown = app
        .graphql(
            create_template,
            json!({ "input": { "name": "Bad", "roles": [{ "name": "treasurer", "permissions": ["donations:delete"] }] } }),
            Some(&operator),
        )
        .await;
    assert_eq!(unknown.error_code(), "BAD_USER_INPUT", "{}", unknown.0);
    let template = app
        .graphql(
            create_template,
            json!({ "input": { "name": "Parish", "tenantType": "parish", "roles": [
                { "name": "treasurer", "permissions": ["donations:write", "donations:read"] }
            ] } }),
            Some(&operator),
        )
        .await;
    assert_eq!(
        template.data()["createTenantTemplate"]["roles"],
        json!([{ "name": "treasurer", "permissions": ["donations:read", "donations:write"] }])
    );

    let mut input = tenant_input("stmarys.church");
    input["tenantType"] = json!("parish");
    input["admin"] =
        json!({ "email": "admin@stmarys.church", "password": helpers::TENANT_PASSWORD });
    app.create_tenant(&operator, input).await;
    let admin = app
        .tenant_token("stmarys.church", "admin@stmarys.church")
        .await;
    let user = json!({ "input": { "email": "treasurer@stmarys.church", "password": helpers::TENANT_PASSWORD, "roles": ["treasurer"] } });
    app.graphql(
        "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
        user,
        Some(&admin),
    )
    .await
    .data();
    let treasurer = app
        .tenant_token("stmarys.church", "treasurer@stmarys.church")
        .await;
    // Without people:read, so without the donation's person.
    let made = app
        .graphql(
            "mutation($input: CreateDonationInput!) { createDonation(input: $input) { amountCents } }",
            json!({ "input": { "amountCents": 4200, "donorName": "Collection" } }),
            Some(&treasurer),
        )
        .await;
    assert_eq!(made.data()["createDonation"]["amountCents"], 4200);
    // The treasurer holds only what the template gave: no people.
    let people = app
        .graphql("{ people { totalCount } }", json!({}), Some(&treasurer))
        .await;
    assert_eq!(people.error_code(), "FORBIDDEN");
}

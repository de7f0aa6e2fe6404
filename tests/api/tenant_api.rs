//! The tenant data API: users, people, roles and settings, per role.

use serde_json::{Value, json};

use crate::{
    helpers::{Gql, TestApp},
    tenant_auth::{ADMIN_PASSWORD, tenant_login, tenant_token, tenant_with_admin},
};

const CREATE_USER: &str =
    "mutation($input: CreateUserInput!) { createUser(input: $input) { id email status roles } }";
const CREATE_PERSON: &str = "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id firstName lastName createdBy { email } } }";
const PEOPLE: &str = "query($first: Int, $after: String, $search: String) { people(first: $first, after: $after, search: $search) { totalCount pageInfo { hasNextPage endCursor } nodes { id firstName lastName } } }";

/// A tenant with an admin, a member and a viewer; returns their tokens in that order.
async fn tenant_with_staff(app: &TestApp, domain: &str) -> [String; 3] {
    let operator = app.operator_token().await;
    tenant_with_admin(app, &operator, domain).await;
    let admin = tenant_token(app, domain).await;
    let mut tokens = vec![admin.clone()];
    for role in ["member", "viewer"] {
        let email = format!("{role}@{domain}");
        let created = app
            .graphql(
                CREATE_USER,
                json!({ "input": { "email": email, "password": ADMIN_PASSWORD, "roles": [role] } }),
                Some(&admin),
            )
            .await;
        assert_eq!(created.data()["createUser"]["roles"], json!([role]));
        let login = tenant_login(app, domain, &email, ADMIN_PASSWORD).await;
        tokens.push(login.data()["login"]["token"].as_str().unwrap().to_owned());
    }
    tokens.try_into().unwrap()
}

fn person(first: &str, last: &str) -> Value {
    json!({ "input": { "firstName": first, "lastName": last } })
}

#[tokio::test]
async fn each_role_gets_exactly_its_permissions() {
    let app = TestApp::spawn().await;
    let [admin, member, viewer] = tenant_with_staff(&app, "roles.church").await;

    // Viewers read but do not write.
    assert_eq!(
        app.graphql(CREATE_PERSON, person("V", "Iewer"), Some(&viewer))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    assert!(
        app.graphql(PEOPLE, json!({}), Some(&viewer)).await.data()["people"]["nodes"].is_array()
    );
    // Members write people but not users or settings.
    let created = app
        .graphql(CREATE_PERSON, person("Mary", "Member"), Some(&member))
        .await;
    assert_eq!(
        created.data()["createPerson"]["createdBy"]["email"],
        "member@roles.church"
    );
    let new_user = json!({ "input": { "email": "x@roles.church", "password": ADMIN_PASSWORD } });
    assert_eq!(
        app.graphql(CREATE_USER, new_user.clone(), Some(&member))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    let settings =
        "mutation { updateTenantSettings(input: { displayName: \"Renamed\" }) { displayName } }";
    assert_eq!(
        app.graphql(settings, json!({}), Some(&member))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    // Admins do everything.
    assert_eq!(
        app.graphql(CREATE_USER, new_user, Some(&admin))
            .await
            .data()["createUser"]["roles"],
        json!(["member"])
    );
    assert_eq!(
        app.graphql(settings, json!({}), Some(&admin)).await.data()["updateTenantSettings"]["displayName"],
        "Renamed"
    );

    let roles = app
        .graphql("{ roles { name permissions } }", json!({}), Some(&viewer))
        .await;
    let roles = roles.data()["roles"].as_array().unwrap().clone();
    let of = |name: &str| roles.iter().find(|r| r["name"] == name).unwrap()["permissions"].clone();
    assert_eq!(
        of("viewer"),
        json!(["people:read", "roles:read", "settings:read", "users:read"])
    );
    assert!(
        of("admin")
            .as_array()
            .unwrap()
            .contains(&json!("settings:write"))
    );
}

#[tokio::test]
async fn platform_tokens_and_anonymous_callers_do_not_reach_tenant_data() {
    let app = TestApp::spawn().await;
    tenant_with_staff(&app, "closed.church").await;
    let operator = app.operator_token().await;
    assert_eq!(
        app.graphql(PEOPLE, json!({}), Some(&operator))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    assert_eq!(
        app.graphql(PEOPLE, json!({}), None).await.error_code(),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        app.graphql("{ users { id } }", json!({}), Some(&operator))
            .await
            .error_code(),
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn people_are_searched_and_paged_with_cursors() {
    let app = TestApp::spawn().await;
    let [admin, ..] = tenant_with_staff(&app, "pages.church").await;
    for (first, last) in [
        ("Ann", "Smith"),
        ("Bob", "Smyth"),
        ("Cid", "Jones"),
        ("Dee", "Smithers"),
        ("Eve", "50%_off"),
    ] {
        app.graphql(CREATE_PERSON, person(first, last), Some(&admin))
            .await
            .data();
    }
    let page = app
        .graphql(PEOPLE, json!({ "first": 2 }), Some(&admin))
        .await;
    let people = &page.data()["people"];
    assert_eq!(people["totalCount"], 5);
    assert_eq!(people["pageInfo"]["hasNextPage"], true);
    let mut seen: Vec<String> = Vec::new();
    let mut after = people["pageInfo"]["endCursor"].clone();
    seen.extend(
        people["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["firstName"].as_str().unwrap().to_owned()),
    );
    loop {
        let next = app
            .graphql(PEOPLE, json!({ "first": 2, "after": after }), Some(&admin))
            .await;
        let people = &next.data()["people"];
        seen.extend(
            people["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["firstName"].as_str().unwrap().to_owned()),
        );
        if people["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = people["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["Ann", "Bob", "Cid", "Dee", "Eve"]);

    let smith = app
        .graphql(PEOPLE, json!({ "search": "SMITH" }), Some(&admin))
        .await;
    assert_eq!(smith.data()["people"]["totalCount"], 2);
    let literal = app
        .graphql(PEOPLE, json!({ "search": "%_" }), Some(&admin))
        .await;
    assert_eq!(
        literal.data()["people"]["nodes"],
        json!([{ "id": literal.data()["people"]["nodes"][0]["id"], "firstName": "Eve", "lastName": "50%_off" }])
    );
}

#[tokio::test]
async fn bad_input_names_its_field_and_duplicates_conflict() {
    let app = TestApp::spawn().await;
    let [admin, ..] = tenant_with_staff(&app, "checks.church").await;
    let blank = app
        .graphql(CREATE_PERSON, person(" ", "X"), Some(&admin))
        .await;
    assert_eq!(
        (blank.error_code(), blank.error_field()),
        ("BAD_USER_INPUT", Some("firstName"))
    );
    let long_notes =
        json!({ "input": { "firstName": "A", "lastName": "B", "notes": "n".repeat(5001) } });
    assert_eq!(
        app.graphql(CREATE_PERSON, long_notes, Some(&admin))
            .await
            .error_field(),
        Some("notes")
    );
    let bad_email = json!({ "input": { "firstName": "A", "lastName": "B", "email": "nope" } });
    assert_eq!(
        app.graphql(CREATE_PERSON, bad_email, Some(&admin))
            .await
            .error_field(),
        Some("email")
    );

    let duplicate =
        json!({ "input": { "email": "member@checks.church", "password": ADMIN_PASSWORD } });
    let conflict = app.graphql(CREATE_USER, duplicate, Some(&admin)).await;
    assert_eq!(
        (conflict.error_code(), conflict.error_field()),
        ("CONFLICT", Some("email"))
    );
    let unknown_role = json!({ "input": { "email": "r@checks.church", "roles": ["wizard"] } });
    assert_eq!(
        app.graphql(CREATE_USER, unknown_role, Some(&admin))
            .await
            .error_field(),
        Some("roles")
    );
    let short_password = json!({ "input": { "email": "p@checks.church", "password": "short" } });
    assert_eq!(
        app.graphql(CREATE_USER, short_password, Some(&admin))
            .await
            .error_field(),
        Some("password")
    );

    let missing = app
        .graphql(
            "mutation($id: ID!) { deletePerson(id: $id) }",
            json!({ "id": uuid::Uuid::new_v4() }),
            Some(&admin),
        )
        .await;
    assert_eq!(missing.error_code(), "NOT_FOUND");
}

#[tokio::test]
async fn a_suspended_user_can_no_longer_log_in_and_roles_can_be_added() {
    let app = TestApp::spawn().await;
    let [admin, ..] = tenant_with_staff(&app, "status.church").await;
    let users = app
        .graphql("{ users { id email } }", json!({}), Some(&admin))
        .await;
    let member_id = users.data()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "member@status.church")
        .unwrap()["id"]
        .clone();
    let promoted = app
        .graphql(
            "mutation($id: ID!) { assignRole(userId: $id, role: \"admin\") { roles } }",
            json!({ "id": member_id }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        promoted.data()["assignRole"]["roles"],
        json!(["admin", "member"])
    );
    let suspended = app
        .graphql("mutation($id: ID!) { updateUser(id: $id, input: { status: \"suspended\" }) { status } }", json!({ "id": member_id }), Some(&admin))
        .await;
    assert_eq!(suspended.data()["updateUser"]["status"], "suspended");
    let login = tenant_login(
        &app,
        "status.church",
        "member@status.church",
        ADMIN_PASSWORD,
    )
    .await;
    assert_eq!(login.error_code(), "UNAUTHENTICATED");
}

/// Statements the app sends for one request.
async fn statements_for(app: &TestApp, token: &str, query: &str, variables: Value) -> (u64, Gql) {
    let before = app.state.metrics.db_statements();
    let response = app.graphql(query, variables, Some(token)).await;
    (app.state.metrics.db_statements() - before, response)
}

#[tokio::test]
async fn nested_creators_and_roles_cost_a_constant_number_of_queries() {
    let app = TestApp::spawn().await;
    let [admin, member, _] = tenant_with_staff(&app, "loader.church").await;
    for i in 0..50 {
        let token = if i % 2 == 0 { &admin } else { &member };
        app.graphql(CREATE_PERSON, person("P", &format!("N{i}")), Some(token))
            .await
            .data();
    }
    const NESTED: &str = "query($first: Int) { people(first: $first) { nodes { firstName createdBy { email roles } } } }";
    let (small, small_page) = statements_for(&app, &admin, NESTED, json!({ "first": 5 })).await;
    let (large, large_page) = statements_for(&app, &admin, NESTED, json!({ "first": 50 })).await;
    assert_eq!(
        small_page.data()["people"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let nodes = large_page.data()["people"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(nodes.len(), 50);
    assert!(nodes.iter().all(|p| {
        p["createdBy"]["roles"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    }));
    assert_eq!(small, large, "a page of 50 costs what a page of 5 does");
}

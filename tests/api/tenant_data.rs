//! The tenant data API: users, people, roles and settings, per role, through GraphQL.

use std::time::Duration;

use sea_orm::{DbBackend, Statement};
use serde_json::{Value, json};

use crate::helpers::{Gql, TENANT_PASSWORD as PASSWORD, TestApp, TestTenant, count_statements};

const CREATE_USER: &str = "mutation($input: CreateUserInput!) { createUser(input: $input) { id email name status roles } }";
const CREATE_PERSON: &str = "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id firstName lastName createdBy { email } } }";
const UPDATE_PERSON: &str = "mutation($id: ID!, $input: PersonInput!) { updatePerson(id: $id, input: $input) { id firstName lastName email phone address birthDate membershipStatus notes updatedAt } }";
const PERSON: &str = "query($id: ID!) { person(id: $id) { id firstName lastName email phone address birthDate membershipStatus notes createdAt updatedAt createdBy { email } } }";
const PEOPLE: &str = "query($first: Int, $after: String, $search: String) { people(first: $first, after: $after, search: $search) { totalCount pageInfo { hasNextPage endCursor } nodes { id firstName lastName } } }";
const UPDATE_SETTINGS: &str = "mutation($input: UpdateTenantSettingsInput!) { updateTenantSettings(input: $input) { displayName features limits { users storageGb } timezone locale updatedAt } }";

fn person(first: &str, last: &str) -> Value {
    json!({ "input": { "firstName": first, "lastName": last } })
}

#[tokio::test]
async fn each_role_gets_exactly_its_permissions() {
    let app = TestApp::spawn().await;
    let TestTenant {
        admin,
        member,
        viewer,
        ..
    } = app.with_tenant("roles.church").await;

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
    let new_user = json!({ "input": { "email": "x@roles.church", "password": PASSWORD } });
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
    app.with_tenant("closed.church").await;
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
    let admin = app.with_tenant("pages.church").await.admin;
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
    let admin = app.with_tenant("checks.church").await.admin;
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

    let duplicate = json!({ "input": { "email": "member@checks.church", "password": PASSWORD } });
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
    let admin = app.with_tenant("status.church").await.admin;
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
    let login = app
        .tenant_login("status.church", "member@status.church", PASSWORD)
        .await;
    assert_eq!(login.error_code(), "UNAUTHENTICATED");
}

/// Statements the app sends for one request.
/// The statements the operation itself sent, as the server reports them.
async fn statements_for(app: &TestApp, token: &str, query: &str, variables: Value) -> (u64, Gql) {
    let response = app.graphql(query, variables, Some(token)).await;
    let count = response.0["extensions"]["sqlStatements"]
        .as_u64()
        .unwrap_or_else(|| panic!("a statement count in {}", response.0));
    (count, response)
}

/// A page of people, a person, or the settings is one gated statement: no transaction, no pin
/// of its own. A page with its count takes a pinned transaction: the pin and two statements.
#[tokio::test]
async fn a_read_of_one_table_is_one_statement() {
    let app = TestApp::spawn_with(count_statements).await;
    let admin = app.with_tenant("onestatement.church").await.admin;
    let created = app
        .graphql(CREATE_PERSON, person("One", "Statement"), Some(&admin))
        .await;
    let id = created.data()["createPerson"]["id"].clone();
    const PAGE: &str = "{ people(first: 20) { nodes { id firstName lastName } } }";
    const ONE: &str = "query($id: ID!) { person(id: $id) { firstName } }";
    const SETTINGS: &str = "{ tenantSettings { displayName } }";
    const COUNTED: &str = "{ people(first: 20) { totalCount nodes { firstName } } }";

    let (page, answer) = statements_for(&app, &admin, PAGE, json!({})).await;
    assert_eq!(answer.data()["people"]["nodes"][0]["lastName"], "Statement");
    assert_eq!(page, 1);
    let (one, answer) = statements_for(&app, &admin, ONE, json!({ "id": id })).await;
    assert_eq!(answer.data()["person"]["firstName"], "One");
    assert_eq!(one, 1);
    let (settings, answer) = statements_for(&app, &admin, SETTINGS, json!({})).await;
    assert!(answer.data()["tenantSettings"]["displayName"].is_string());
    assert_eq!(settings, 1);
    let (counted, answer) = statements_for(&app, &admin, COUNTED, json!({})).await;
    assert_eq!(answer.data()["people"]["totalCount"], 1);
    assert_eq!(counted, 3);
}

/// An app whose pools hold `connections` connections each, so that the gated reads share
/// those a test can look at through `app.db().reads()`.
async fn with_read_connections(connections: u32) -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("DATABASE_MAX_CONNECTIONS".into(), connections.to_string());
    })
    .await
}

/// A tenant's gated read is planned once on a connection and that plan serves every later
/// read (PostgreSQL would otherwise plan a statement with parameters afresh five times first).
#[tokio::test]
async fn a_gated_read_keeps_one_plan_per_connection() {
    let app = with_read_connections(1).await;
    let admin = app.with_tenant("oneplan.church").await.admin;
    app.graphql(CREATE_PERSON, person("One", "Plan"), Some(&admin))
        .await
        .data();
    const PAGE: &str = "{ people(first: 5) { nodes { firstName } } }";
    const PLANS: &str = "SELECT generic_plans, custom_plans FROM pg_catalog.pg_prepared_statements \
                         WHERE statement LIKE '%\"tenant_oneplan_church\".\"person\"%'";
    // The one read connection serves the reads and then the look at its prepared statements.
    // It is renewed every 30 s: a round that straddles a renewal finds nothing, and goes again.
    let reads = app.db().reads().expect("straight to PostgreSQL");
    let mut rounds = 0;
    let plans = loop {
        rounds += 1;
        for _ in 0..7 {
            let page = app.graphql(PAGE, json!({}), Some(&admin)).await;
            assert_eq!(page.data()["people"]["nodes"][0]["firstName"], "One");
        }
        let plans = reads
            .query_all(&Statement::from_string(DbBackend::Postgres, PLANS))
            .await
            .unwrap();
        match plans.into_iter().next() {
            Some(plans) => break plans,
            None => assert!(rounds < 3, "the page's statement is never prepared"),
        }
    };
    let generic: i64 = plans.get("generic_plans");
    let custom: i64 = plans.get("custom_plans");
    // Every read of the round if the connection lived through them all; fewer if it was renewed
    // meanwhile.
    assert!((1..=7).contains(&generic), "{generic} generic plans");
    assert_eq!(custom, 0);
}

/// A read given up half-way leaves its statement running in front of any read sent after it:
/// its connection takes no further reads and the statement is cancelled, while a connection
/// whose statement PostgreSQL refused is still in step and stays.
#[tokio::test]
async fn a_read_given_up_half_way_is_cancelled_and_a_refused_one_keeps_its_connection() {
    let app = with_read_connections(1).await;
    let reads = app.db().reads().expect("straight to PostgreSQL");
    let backend = async || -> i32 {
        let rows = reads
            .query_all(&Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_catalog.pg_backend_pid() AS pid",
            ))
            .await
            .unwrap();
        rows[0].get("pid")
    };
    let first = backend().await;
    assert_eq!(backend().await, first, "one connection, reused");

    let sleep = Statement::from_string(DbBackend::Postgres, "SELECT pg_catalog.pg_sleep(60)");
    let given_up = tokio::time::timeout(Duration::from_millis(300), reads.query_all(&sleep)).await;
    assert!(given_up.is_err(), "the read was still waiting");
    let second = backend().await;
    assert_ne!(
        second, first,
        "the connection given up half-way takes no further reads"
    );
    // The sleep would hold the first backend for a minute; cancelled, it is idle (or gone)
    // within moments.
    let still_sleeping = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(*) AS sleeping FROM pg_catalog.pg_stat_activity \
         WHERE pid = $1 AND state = 'active'",
        [first.into()],
    );
    let mut polls = 0;
    loop {
        let rows = reads.query_all(&still_sleeping).await.unwrap();
        if rows[0].get::<_, i64>("sleeping") == 0 {
            break;
        }
        polls += 1;
        assert!(polls < 100, "the read given up was not cancelled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let refused = reads
        .query_all(&Statement::from_string(DbBackend::Postgres, "SELECT 1 / 0"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("division by zero"),
        "{refused}"
    );
    assert_eq!(
        backend().await,
        second,
        "a refused statement keeps its connection"
    );
}

/// A read sent behind a slow statement would wait for it: a connection that has answered
/// nothing for a while takes no further reads, which go to another.
#[tokio::test]
async fn reads_go_around_a_connection_stuck_on_a_slow_statement() {
    let app = with_read_connections(2).await;
    let reads = app.db().reads().expect("straight to PostgreSQL");
    let slow = tokio::spawn({
        let reads = reads.clone();
        async move {
            let sleep =
                Statement::from_string(DbBackend::Postgres, "SELECT pg_catalog.pg_sleep(30)");
            reads.query_all(&sleep).await
        }
    });
    // Until the slow statement runs (seen through the pool, not the reads' connections), and a
    // little longer: its connection has answered nothing since.
    let mut polls = 0;
    while app
        .scalar(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%pg_sleep(30)%' AND pid <> pg_catalog.pg_backend_pid()",
        )
        .await
        == 0
    {
        polls += 1;
        assert!(polls < 250, "the slow statement never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let quick = Statement::from_string(DbBackend::Postgres, "SELECT 1 AS one");
    let rows = tokio::time::timeout(Duration::from_secs(20), reads.query_all(&quick))
        .await
        .expect("the quick read did not wait for the slow one")
        .unwrap();
    assert_eq!(rows[0].get::<_, i32>("one"), 1);
    slow.abort();
}

/// Reads that share a connection at the same time each get their own answer, and one that
/// PostgreSQL refuses in the middle of them fails alone.
#[tokio::test]
async fn reads_sharing_a_connection_get_their_own_answers() {
    let app = with_read_connections(1).await;
    let reads = app.db().reads().expect("straight to PostgreSQL");
    let answers = futures_util::future::join_all((0..24_i64).map(|n| async move {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_catalog.pg_backend_pid() AS pid, 1000 / ($1::int8 - 7) AS quotient",
            [n.into()],
        );
        let rows = reads.query_all(&statement).await?;
        let pid: i32 = rows[0].get("pid");
        let quotient: i64 = rows[0].get("quotient");
        Ok::<_, tenantgraph::db::reads::ReadError>((pid, quotient))
    }))
    .await;
    let mut backends = std::collections::HashSet::new();
    for (n, answer) in (0..24_i64).zip(answers) {
        match answer {
            Ok((pid, quotient)) => {
                assert_eq!(quotient, 1000 / (n - 7), "read {n} got another's answer");
                backends.insert(pid);
            }
            Err(err) => {
                assert_eq!(n, 7, "read {n} failed: {err}");
                assert!(err.to_string().contains("division by zero"), "{err}");
            }
        }
    }
    assert_eq!(backends.len(), 1, "one connection carried them all");
}

/// Two tenants' pages read at the same time over one shared connection: each answer holds its
/// own tenant's people only.
#[tokio::test]
async fn tenants_reading_at_once_on_one_connection_see_their_own_people() {
    let app = with_read_connections(1).await;
    let first = app.with_tenant("pipelined-a.church").await.admin;
    let second = app.with_tenant("pipelined-b.church").await.admin;
    for (token, name) in [(&first, "Aaron"), (&second, "Beatrice")] {
        app.graphql(CREATE_PERSON, person(name, "Reader"), Some(token))
            .await
            .data();
    }
    const PAGE: &str = "{ people(first: 10) { nodes { firstName } } }";
    let pages = futures_util::future::join_all((0..40).map(|i| {
        let (token, name) = if i % 2 == 0 {
            (&first, "Aaron")
        } else {
            (&second, "Beatrice")
        };
        let app = &app;
        async move {
            (
                name,
                app.graphql(PAGE, json!({}), Some(token.as_str())).await,
            )
        }
    }))
    .await;
    for (name, page) in pages {
        assert_eq!(
            page.data()["people"]["nodes"],
            json!([{ "firstName": name }]),
            "a page for {name}'s tenant"
        );
    }
}

/// A page reads only the columns its selection asks for. Whatever the selection's shape —
/// `nodes` or `edges { node }`, a named or an inline fragment, an alias, with the count (in a
/// pinned transaction) or without — every field is the person's own, as `person` answers it.
#[tokio::test]
async fn a_page_answers_each_selected_field_as_the_person_itself() {
    let app = TestApp::spawn().await;
    let admin = app.with_tenant("columns.church").await.admin;
    let input = json!({
        "firstName": "Naomi", "lastName": "Bethlehem", "email": "naomi@columns.church",
        "phone": "+1 555 0100", "address": "1 Field Road", "birthDate": "1990-04-01",
        "membershipStatus": "member", "notes": "came back",
    });
    let created = app
        .graphql(CREATE_PERSON, json!({ "input": input }), Some(&admin))
        .await;
    let id = created.data()["createPerson"]["id"].clone();
    const FIELDS: &str = "id firstName lastName email phone address birthDate membershipStatus \
                          notes externalRef createdAt updatedAt createdBy { email }";
    let whole = app
        .graphql(
            &format!("query($id: ID!) {{ person(id: $id) {{ {FIELDS} }} }}"),
            json!({ "id": id }),
            Some(&admin),
        )
        .await
        .data()["person"]
        .clone();
    assert_eq!(whole["notes"], "came back");
    let shapes = [
        format!("{{ people {{ nodes {{ {FIELDS} }} }} }}"),
        format!("{{ people {{ totalCount edges {{ cursor node {{ {FIELDS} }} }} }} }}"),
        format!("{{ people {{ nodes {{ ...whole }} }} }} fragment whole on Person {{ {FIELDS} }}"),
        format!(
            "{{ people {{ edges {{ node {{ __typename ... on Person {{ {FIELDS} }} }} }} }} }}"
        ),
    ];
    for shape in &shapes {
        let answer = app.graphql(shape, json!({}), Some(&admin)).await;
        let people = &answer.data()["people"];
        let mut node = people["nodes"][0].clone();
        if node.is_null() {
            node = people["edges"][0]["node"].clone();
            node.as_object_mut().unwrap().remove("__typename");
        }
        assert_eq!(node, whole, "{shape}");
    }
    let aliased = app
        .graphql(
            "{ people { nodes { family: lastName given: firstName } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        aliased.data()["people"]["nodes"][0],
        json!({ "family": "Bethlehem", "given": "Naomi" })
    );
}

#[tokio::test]
async fn nested_creators_and_roles_cost_a_constant_number_of_queries() {
    nested_creators_cost_a_constant_number_of_queries(&TestApp::spawn_with(count_statements).await)
        .await;
}

/// A page of people with their creators and the creators' roles costs the same statements
/// whatever its size (the app counts statements: [`count_statements`]).
pub async fn nested_creators_cost_a_constant_number_of_queries(app: &TestApp) {
    let TestTenant { admin, member, .. } = app.with_tenant("loader.church").await;
    for i in 0..50 {
        let token = if i % 2 == 0 { &admin } else { &member };
        app.graphql(CREATE_PERSON, person("P", &format!("N{i}")), Some(token))
            .await
            .data();
    }
    const NESTED: &str = "query($first: Int) { people(first: $first) { nodes { firstName createdBy { email roles } } } }";
    let (small, small_page) = statements_for(app, &admin, NESTED, json!({ "first": 5 })).await;
    let (large, large_page) = statements_for(app, &admin, NESTED, json!({ "first": 50 })).await;
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

#[tokio::test]
async fn the_users_list_costs_the_same_whatever_its_length_and_a_mutation_reads_its_own_writes() {
    users_list_costs_the_same_and_mutations_read_their_writes(
        &TestApp::spawn_with(count_statements).await,
    )
    .await;
}

/// The users list costs the same whatever its length (the app counts statements), and the
/// second of two role changes in one document sees the first.
pub async fn users_list_costs_the_same_and_mutations_read_their_writes(app: &TestApp) {
    let admin = app.with_tenant("listcost.church").await.admin;
    const USERS: &str = "{ users { id email roles } }";
    let (three, _) = statements_for(app, &admin, USERS, json!({})).await;
    for i in 0..20 {
        app.graphql(
            "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
            json!({ "input": { "email": format!("u{i}@listcost.church"), "password": PASSWORD, "roles": ["viewer"] } }),
            Some(&admin),
        )
        .await
        .data();
    }
    let (twenty_three, listed) = statements_for(app, &admin, USERS, json!({})).await;
    assert_eq!(listed.data()["users"].as_array().unwrap().len(), 23);
    assert_eq!(three, twenty_three, "roles of the whole list are one batch");

    // Two role changes to one user in one document: the second answer sees both.
    let id = listed.data()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "u0@listcost.church")
        .unwrap()["id"]
        .clone();
    let both = app
        .graphql(
            "mutation($id: ID!) { a: assignRole(userId: $id, role: \"member\") { roles } b: assignRole(userId: $id, role: \"admin\") { roles } }",
            json!({ "id": id }),
            Some(&admin),
        )
        .await;
    assert_eq!(both.data()["a"]["roles"], json!(["member", "viewer"]));
    assert_eq!(
        both.data()["b"]["roles"],
        json!(["admin", "member", "viewer"])
    );
}

#[tokio::test]
async fn a_person_is_created_read_updated_and_deleted() {
    person_lifecycle_per_role(&TestApp::spawn().await).await;
}

/// A person created, read, updated and deleted, by the roles allowed to and not by the others.
pub async fn person_lifecycle_per_role(app: &TestApp) {
    let TestTenant {
        admin,
        member,
        viewer,
        ..
    } = app.with_tenant("crud.church").await;
    let full = json!({ "input": {
        "firstName": " Ruth ", "lastName": "Moab", "email": "Ruth@Example.org", "phone": "+1 555 0100",
        "address": "1 Field Lane", "birthDate": "1990-02-28", "membershipStatus": "visitor",
        "notes": "Met at the harvest supper."
    } });
    let created = app.graphql(CREATE_PERSON, full, Some(&member)).await;
    let id = created.data()["createPerson"]["id"].clone();
    assert_eq!(
        created.data()["createPerson"]["createdBy"]["email"],
        "member@crud.church"
    );

    let read = app
        .graphql(PERSON, json!({ "id": id }), Some(&viewer))
        .await;
    let person = read.data()["person"].clone();
    assert_eq!(person["firstName"], "Ruth", "names are trimmed");
    assert_eq!(
        person["email"], "ruth@example.org",
        "emails are lower-cased"
    );
    assert_eq!(person["birthDate"], "1990-02-28");
    assert_eq!(person["membershipStatus"], "visitor");
    assert_eq!(person["createdBy"]["email"], "member@crud.church");

    let updated = app
        .graphql(
            UPDATE_PERSON,
            json!({ "id": id, "input": { "phone": "+1 555 0199", "membershipStatus": "member" } }),
            Some(&admin),
        )
        .await;
    let after = &updated.data()["updatePerson"];
    assert_eq!(after["phone"], "+1 555 0199");
    assert_eq!(after["membershipStatus"], "member");
    assert_eq!(after["lastName"], "Moab", "absent fields stay as they were");
    assert_eq!(after["notes"], "Met at the harvest supper.");
    assert_ne!(after["updatedAt"], person["updatedAt"]);

    let delete = "mutation($id: ID!) { deletePerson(id: $id) }";
    assert_eq!(
        app.graphql(delete, json!({ "id": id }), Some(&viewer))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    assert_eq!(
        app.graphql(delete, json!({ "id": id }), Some(&member))
            .await
            .data()["deletePerson"],
        true
    );
    assert!(
        app.graphql(PERSON, json!({ "id": id }), Some(&admin))
            .await
            .data()["person"]
            .is_null()
    );
    assert_eq!(
        app.graphql(delete, json!({ "id": id }), Some(&admin))
            .await
            .error_code(),
        "NOT_FOUND"
    );
    assert_eq!(
        app.graphql(
            UPDATE_PERSON,
            json!({ "id": id, "input": { "notes": "x" } }),
            Some(&admin)
        )
        .await
        .error_code(),
        "NOT_FOUND"
    );
    let bad_id = app
        .graphql(PERSON, json!({ "id": "not-an-id" }), Some(&admin))
        .await;
    assert_eq!(
        (bad_id.error_code(), bad_id.error_field()),
        ("BAD_USER_INPUT", Some("id"))
    );
}

#[tokio::test]
async fn every_text_input_is_bounded_and_the_fault_names_its_field() {
    let app = TestApp::spawn().await;
    let admin = app.with_tenant("limits.church").await.admin;
    let long = |n: usize| "x".repeat(n);
    let long_email = format!("{}@limits.church", long(250));
    let person_cases = [
        ("firstName", json!(long(201))),
        ("lastName", json!(long(201))),
        ("email", json!(long_email)),
        ("phone", json!(long(41))),
        ("address", json!(long(501))),
        ("membershipStatus", json!(long(51))),
        ("notes", json!(long(5001))),
    ];
    let created = app
        .graphql(CREATE_PERSON, person("Ok", "Person"), Some(&admin))
        .await;
    let id = created.data()["createPerson"]["id"].clone();
    for (field, value) in person_cases {
        let mut input = json!({ "firstName": "A", "lastName": "B" });
        input[field] = value.clone();
        let refused = app
            .graphql(CREATE_PERSON, json!({ "input": input }), Some(&admin))
            .await;
        assert_eq!(
            (refused.error_code(), refused.error_field()),
            ("BAD_USER_INPUT", Some(field)),
            "createPerson {field}"
        );
        let refused = app
            .graphql(
                UPDATE_PERSON,
                json!({ "id": id, "input": { field: value } }),
                Some(&admin),
            )
            .await;
        assert_eq!(
            (refused.error_code(), refused.error_field()),
            ("BAD_USER_INPUT", Some(field)),
            "updatePerson {field}"
        );
    }
    // The limits themselves are accepted.
    let at_limits = json!({ "input": {
        "firstName": long(200), "lastName": long(200), "phone": long(40), "address": long(500),
        "membershipStatus": long(50), "notes": long(5000)
    } });
    app.graphql(CREATE_PERSON, at_limits, Some(&admin))
        .await
        .data();

    let user_cases = [
        ("email", json!({ "email": long_email })),
        (
            "name",
            json!({ "email": "n@limits.church", "name": long(201) }),
        ),
        (
            "password",
            json!({ "email": "p@limits.church", "password": long(1025) }),
        ),
        (
            "status",
            json!({ "email": "s@limits.church", "status": "retired" }),
        ),
        (
            "roles",
            json!({ "email": "r@limits.church", "roles": [long(101)] }),
        ),
    ];
    for (field, input) in user_cases {
        let refused = app
            .graphql(CREATE_USER, json!({ "input": input }), Some(&admin))
            .await;
        assert_eq!(
            (refused.error_code(), refused.error_field()),
            ("BAD_USER_INPUT", Some(field)),
            "createUser {field}"
        );
    }
    let search = app
        .graphql(PEOPLE, json!({ "search": long(201) }), Some(&admin))
        .await;
    assert_eq!(search.error_field(), Some("search"));
    let settings = app
        .graphql(
            UPDATE_SETTINGS,
            json!({ "input": { "displayName": long(201) } }),
            Some(&admin),
        )
        .await;
    assert_eq!(settings.error_field(), Some("displayName"));
}

#[tokio::test]
async fn emails_are_unique_in_a_tenant_whatever_their_case() {
    let app = TestApp::spawn().await;
    let admin = app.with_tenant("emails.church").await.admin;
    let first = app
        .graphql(
            CREATE_USER,
            json!({ "input": { "email": "  Ann.Lee@Emails.Church ", "name": "Ann", "password": PASSWORD, "roles": ["viewer", "viewer"] } }),
            Some(&admin),
        )
        .await;
    let user = &first.data()["createUser"];
    assert_eq!(user["email"], "ann.lee@emails.church");
    assert_eq!(user["status"], "active");
    assert_eq!(user["roles"], json!(["viewer"]));
    let again = app
        .graphql(
            CREATE_USER,
            json!({ "input": { "email": "ann.lee@EMAILS.church" } }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        (again.error_code(), again.error_field()),
        ("CONFLICT", Some("email"))
    );
    // Another tenant may have the same address.
    let other = app.with_tenant("other.church").await.admin;
    app.graphql(
        CREATE_USER,
        json!({ "input": { "email": "ann.lee@emails.church" } }),
        Some(&other),
    )
    .await
    .data();
}

#[tokio::test]
async fn users_are_changed_and_roles_assigned_idempotently() {
    let app = TestApp::spawn().await;
    let TestTenant { admin, member, .. } = app.with_tenant("people.church").await;
    let users = app
        .graphql(
            "{ users { id email status roles createdAt lastLoginAt } }",
            json!({}),
            Some(&member),
        )
        .await;
    let users = users.data()["users"].as_array().unwrap().clone();
    assert_eq!(users.len(), 3);
    assert_eq!(users[0]["email"], "admin@people.church", "oldest first");
    assert_eq!(users[0]["roles"], json!(["admin"]));
    assert!(users[0]["lastLoginAt"].is_string(), "the admin logged in");
    let viewer = users
        .iter()
        .find(|u| u["email"] == "viewer@people.church")
        .unwrap();
    let id = viewer["id"].clone();

    let one = app
        .graphql(
            "query($id: ID!) { user(id: $id) { email roles } }",
            json!({ "id": id }),
            Some(&member),
        )
        .await;
    assert_eq!(one.data()["user"]["roles"], json!(["viewer"]));
    let nobody = app
        .graphql(
            "query($id: ID!) { user(id: $id) { email } }",
            json!({ "id": uuid::Uuid::new_v4() }),
            Some(&member),
        )
        .await;
    assert!(nobody.data()["user"].is_null());

    const ASSIGN: &str = "mutation($id: ID!, $role: String!) { assignRole(userId: $id, role: $role) { email roles } }";
    assert_eq!(
        app.graphql(ASSIGN, json!({ "id": id, "role": "member" }), Some(&member))
            .await
            .error_code(),
        "FORBIDDEN"
    );
    for _ in 0..2 {
        let assigned = app
            .graphql(ASSIGN, json!({ "id": id, "role": "member" }), Some(&admin))
            .await;
        assert_eq!(
            assigned.data()["assignRole"]["roles"],
            json!(["member", "viewer"])
        );
    }
    let unknown = app
        .graphql(ASSIGN, json!({ "id": id, "role": "wizard" }), Some(&admin))
        .await;
    assert_eq!(
        (unknown.error_code(), unknown.error_field()),
        ("BAD_USER_INPUT", Some("role"))
    );
    let missing = app
        .graphql(
            ASSIGN,
            json!({ "id": uuid::Uuid::new_v4(), "role": "member" }),
            Some(&admin),
        )
        .await;
    assert_eq!(missing.error_code(), "NOT_FOUND");

    const UPDATE: &str = "mutation($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { name status roles } }";
    let renamed = app
        .graphql(
            UPDATE,
            json!({ "id": id, "input": { "name": "Vera", "password": "a-new-password" } }),
            Some(&admin),
        )
        .await;
    assert_eq!(renamed.data()["updateUser"]["name"], "Vera");
    assert_eq!(renamed.data()["updateUser"]["status"], "active");
    assert_eq!(
        app.tenant_login("people.church", "viewer@people.church", PASSWORD)
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
    let relogin = app
        .tenant_login("people.church", "viewer@people.church", "a-new-password")
        .await;
    assert_eq!(
        relogin.data()["login"]["user"]["roles"],
        json!(["member", "viewer"])
    );
    let bad_status = app
        .graphql(
            UPDATE,
            json!({ "id": id, "input": { "status": "retired" } }),
            Some(&admin),
        )
        .await;
    assert_eq!(bad_status.error_field(), Some("status"));
    let missing = app
        .graphql(
            UPDATE,
            json!({ "id": uuid::Uuid::new_v4(), "input": { "status": "inactive" } }),
            Some(&admin),
        )
        .await;
    assert_eq!(missing.error_code(), "NOT_FOUND");
}

#[tokio::test]
async fn tenant_settings_are_read_by_all_and_changed_within_the_registry_rules() {
    let app = TestApp::spawn().await;
    let TestTenant { admin, viewer, .. } = app.with_tenant("settings.church").await;
    const READ: &str = "{ tenantSettings { displayName features limits { users storageGb } timezone locale updatedAt } }";
    let before = app.graphql(READ, json!({}), Some(&viewer)).await;
    let before = before.data()["tenantSettings"].clone();
    assert!(before["displayName"].is_string());

    let changed = app
        .graphql(
            UPDATE_SETTINGS,
            json!({ "input": { "features": ["analytics", "webhooks"], "limits": { "users": 25, "storageGb": 5 }, "timezone": "Europe/Paris", "locale": "fr-FR" } }),
            Some(&admin),
        )
        .await;
    let changed = &changed.data()["updateTenantSettings"];
    assert_eq!(changed["features"], json!(["analytics", "webhooks"]));
    assert_eq!(changed["limits"], json!({ "users": 25, "storageGb": 5 }));
    assert_eq!(changed["timezone"], "Europe/Paris");
    assert_eq!(changed["displayName"], before["displayName"]);

    // A limit given alone leaves the other limit and the features as they were.
    let one_limit = app
        .graphql(
            UPDATE_SETTINGS,
            json!({ "input": { "limits": { "users": 30 } } }),
            Some(&admin),
        )
        .await;
    let one_limit = &one_limit.data()["updateTenantSettings"];
    assert_eq!(one_limit["limits"], json!({ "users": 30, "storageGb": 5 }));
    assert_eq!(one_limit["features"], json!(["analytics", "webhooks"]));
    assert_eq!(one_limit["locale"], "fr-FR");

    for (input, field) in [
        (json!({ "features": ["teleportation"] }), "features"),
        (json!({ "limits": { "users": 0 } }), "limits.users"),
        (
            json!({ "limits": { "storageGb": 100000 } }),
            "limits.storageGb",
        ),
        (json!({ "timezone": " " }), "timezone"),
    ] {
        let refused = app
            .graphql(UPDATE_SETTINGS, json!({ "input": input }), Some(&admin))
            .await;
        assert_eq!(
            (refused.error_code(), refused.error_field()),
            ("BAD_USER_INPUT", Some(field)),
            "{input}"
        );
    }
    assert_eq!(
        app.graphql(
            UPDATE_SETTINGS,
            json!({ "input": { "locale": "de" } }),
            Some(&viewer)
        )
        .await
        .error_code(),
        "FORBIDDEN"
    );
    let after = app.graphql(READ, json!({}), Some(&viewer)).await;
    assert_eq!(
        after.data()["tenantSettings"]["limits"],
        json!({ "users": 30, "storageGb": 5 }),
        "refused changes change nothing"
    );

    // The registry keeps its own copy.
    let operator = app.operator_token().await;
    let registry = app
        .graphql(
            "query($d: String) { tenant(domain: $d) { settings { features } } }",
            json!({ "d": "settings.church" }),
            Some(&operator),
        )
        .await;
    assert_ne!(
        registry.data()["tenant"]["settings"]["features"],
        json!(["analytics", "webhooks"])
    );
}

#[tokio::test]
async fn an_api_key_reads_and_writes_people_of_its_tenant() {
    let app = TestApp::spawn().await;
    let key = app.with_tenant("keyed.church").await.api_key;
    let created = app
        .graphql_with_key(CREATE_PERSON, person("Kay", "Service"), &key)
        .await;
    assert!(
        created.data()["createPerson"]["createdBy"].is_null(),
        "a key is nobody's user"
    );
    let listed = app
        .graphql_with_key(
            "{ people { totalCount nodes { lastName createdBy { email } } } }",
            json!({}),
            &key,
        )
        .await;
    assert_eq!(listed.data()["people"]["totalCount"], 1);
    assert_eq!(listed.data()["people"]["nodes"][0]["lastName"], "Service");
    let users = app
        .graphql_with_key("{ users { email roles } }", json!({}), &key)
        .await;
    assert_eq!(
        users.data()["users"],
        json!([
            { "email": "admin@keyed.church", "roles": ["admin"] },
            { "email": "member@keyed.church", "roles": ["member"] },
            { "email": "viewer@keyed.church", "roles": ["viewer"] },
        ])
    );
    let bad = app
        .graphql_with_key("{ people { totalCount } }", json!({}), "tk_not-a-key")
        .await;
    assert_eq!(bad.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_tenant_reaches_none_of_another_tenants_people_by_id() {
    let app = TestApp::spawn().await;
    let first_admin = app.with_tenant("first.church").await.admin;
    let second_admin = app.with_tenant("second.church").await.admin;
    let created = app
        .graphql(CREATE_PERSON, person("Only", "First"), Some(&first_admin))
        .await;
    let id = created.data()["createPerson"]["id"].clone();
    assert!(
        app.graphql(PERSON, json!({ "id": id }), Some(&second_admin))
            .await
            .data()["person"]
            .is_null()
    );
    assert_eq!(
        app.graphql(
            UPDATE_PERSON,
            json!({ "id": id, "input": { "notes": "mine now" } }),
            Some(&second_admin)
        )
        .await
        .error_code(),
        "NOT_FOUND"
    );
    assert_eq!(
        app.graphql(
            "mutation($id: ID!) { deletePerson(id: $id) }",
            json!({ "id": id }),
            Some(&second_admin)
        )
        .await
        .error_code(),
        "NOT_FOUND"
    );
    let still = app
        .graphql(PERSON, json!({ "id": id }), Some(&first_admin))
        .await;
    assert_eq!(still.data()["person"]["notes"], Value::Null);
}

#[tokio::test]
async fn page_sizes_are_clamped_and_foreign_cursors_refused() {
    let app = TestApp::spawn().await;
    let admin = app.with_tenant("clamp.church").await.admin;
    for last in ["One", "Two", "Three"] {
        app.graphql(CREATE_PERSON, person("P", last), Some(&admin))
            .await
            .data();
    }
    let none = app
        .graphql(PEOPLE, json!({ "first": 0 }), Some(&admin))
        .await;
    assert_eq!(none.data()["people"]["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(none.data()["people"]["pageInfo"]["hasNextPage"], true);
    let huge = app
        .graphql(PEOPLE, json!({ "first": 100000 }), Some(&admin))
        .await;
    assert_eq!(huge.data()["people"]["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(huge.data()["people"]["pageInfo"]["hasNextPage"], false);
    let default = app.graphql(PEOPLE, json!({}), Some(&admin)).await;
    assert_eq!(default.data()["people"]["totalCount"], 3);
    let bad = app
        .graphql(PEOPLE, json!({ "after": "bm90IGEgY3Vyc29y" }), Some(&admin))
        .await;
    assert_eq!(
        (bad.error_code(), bad.error_field()),
        ("BAD_USER_INPUT", Some("after"))
    );
    // `_` and `%` are literal in a search, not wildcards.
    let underscore = app
        .graphql(PEOPLE, json!({ "search": "T_o" }), Some(&admin))
        .await;
    assert_eq!(underscore.data()["people"]["totalCount"], 0);
}

#[tokio::test]
async fn nested_look_ups_work_over_the_websocket_too() {
    let app = TestApp::spawn().await;
    let admin = app.with_tenant("socket.church").await.admin;
    app.graphql(CREATE_PERSON, person("Wes", "Socket"), Some(&admin))
        .await
        .data();
    let mut socket = app.websocket().await;
    let ack = socket.init(Some(&admin)).await.message();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
        .subscribe(
            "1",
            "{ people { nodes { lastName createdBy { email roles } } } }",
            json!({}),
        )
        .await;
    let next = socket.next_event().await.message();
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(
        next["payload"]["data"]["people"]["nodes"],
        json!([{ "lastName": "Socket", "createdBy": { "email": "admin@socket.church", "roles": ["admin"] } }]),
        "{next}"
    );
}

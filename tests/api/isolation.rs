//! Tenant isolation as a property: several tenants, several credentials each, random operations
//! in random order — and no credential ever sees or changes another tenant's rows.

use std::collections::{HashMap, HashSet};

use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};

use crate::helpers::{Gql, TestApp};

const TENANTS: [&str; 3] = ["iso-a.church", "iso-b.church", "iso-c.church"];
const OPERATIONS: usize = 120;

/// A credential of one tenant: a user token or the tenant's API key.
struct Credential {
    tenant: usize,
    token: Option<String>,
    api_key: Option<String>,
}

async fn call(app: &TestApp, credential: &Credential, query: &str, variables: Value) -> Gql {
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = &credential.token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = &credential.api_key {
        request = request.header("x-api-key", key);
    }
    Gql(request.send().await.unwrap().json().await.unwrap())
}

#[tokio::test]
async fn no_credential_ever_sees_or_changes_another_tenants_rows() {
    no_credential_sees_or_changes_another_tenants_rows(&TestApp::spawn().await).await;
}

/// Random operations of several credentials of several tenants, checked against a model.
pub async fn no_credential_sees_or_changes_another_tenants_rows(app: &TestApp) {
    let mut credentials = Vec::new();
    for (index, domain) in TENANTS.iter().enumerate() {
        let tenant = app.with_tenant(domain).await;
        credentials.push(Credential {
            tenant: index,
            token: Some(tenant.admin),
            api_key: None,
        });
        credentials.push(Credential {
            tenant: index,
            token: None,
            api_key: Some(tenant.api_key),
        });
    }

    // The people each tenant holds, as the test believes it: id → last name.
    let mut owned: Vec<HashMap<String, String>> = vec![HashMap::new(); TENANTS.len()];
    let mut rng = StdRng::seed_from_u64(0x7e4a47);
    for step in 0..OPERATIONS {
        let credential = credentials.choose(&mut rng).unwrap();
        let mine = credential.tenant;
        // Someone else's person, when any exists: the target of every cross-tenant attempt.
        let foreign: Vec<(usize, String)> = owned
            .iter()
            .enumerate()
            .filter(|(tenant, _)| *tenant != mine)
            .flat_map(|(tenant, people)| people.keys().map(move |id| (tenant, id.clone())))
            .collect();
        match rng.random_range(0..6) {
            0 | 1 => {
                let last_name = format!("{}-{step}", TENANTS[mine]);
                let created = call(
                    app,
                    credential,
                    "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id lastName } }",
                    json!({ "input": { "firstName": "P", "lastName": last_name } }),
                )
                .await;
                let id = created.data()["createPerson"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                owned[mine].insert(id, last_name);
            }
            2 => {
                let listed = call(
                    app,
                    credential,
                    "{ people(first: 100) { totalCount nodes { id lastName } } }",
                    json!({}),
                )
                .await;
                let seen: HashSet<String> = listed.data()["people"]["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["id"].as_str().unwrap().to_owned())
                    .collect();
                let expected: HashSet<String> = owned[mine].keys().cloned().collect();
                assert_eq!(
                    seen, expected,
                    "tenant {} lists exactly its own people",
                    TENANTS[mine]
                );
                assert_eq!(listed.data()["people"]["totalCount"], json!(expected.len()));
            }
            3 if !foreign.is_empty() => {
                let (_, id) = foreign.choose(&mut rng).unwrap();
                let read = call(
                    app,
                    credential,
                    "query($id: ID!) { person(id: $id) { id } }",
                    json!({ "id": id }),
                )
                .await;
                assert!(
                    read.0["data"]["person"].is_null(),
                    "tenant {} must not read another tenant's person: {}",
                    TENANTS[mine],
                    read.0
                );
            }
            4 if !foreign.is_empty() => {
                let (_, id) = foreign.choose(&mut rng).unwrap();
                let changed = call(
                    app,
                    credential,
                    "mutation($id: ID!) { updatePerson(id: $id, input: { lastName: \"hijacked\" }) { id } }",
                    json!({ "id": id }),
                )
                .await;
                assert_eq!(changed.error_code(), "NOT_FOUND", "{}", changed.0);
            }
            5 if !foreign.is_empty() => {
                let (_, id) = foreign.choose(&mut rng).unwrap();
                let deleted = call(
                    app,
                    credential,
                    "mutation($id: ID!) { deletePerson(id: $id) }",
                    json!({ "id": id }),
                )
                .await;
                assert!(
                    deleted.0["data"].is_null()
                        || deleted.0["data"]["deletePerson"] == json!(false),
                    "{}",
                    deleted.0
                );
            }
            _ => {}
        }
    }

    // Finally, every tenant holds exactly what it made, untouched by the others.
    for (tenant, people) in owned.iter().enumerate() {
        let credential = credentials.iter().find(|c| c.tenant == tenant).unwrap();
        let listed = call(
            app,
            credential,
            "{ people(first: 100) { nodes { id lastName } } }",
            json!({}),
        )
        .await;
        let seen: HashMap<String, String> = listed.data()["people"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_owned(),
                    p["lastName"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(&seen, people, "tenant {}", TENANTS[tenant]);
        assert!(seen.values().all(|name| name.starts_with(TENANTS[tenant])));
    }
}

//! Tenant isolation of people, as a property (see `tests/support/isolation.rs`).

use std::collections::HashMap;

use rand::{Rng, rngs::StdRng};
use serde_json::json;

use crate::{
    helpers::TestApp,
    isolation_property::{
        Credential, Rows, no_credential_sees_or_changes_another_tenants_rows, nodes_by_id,
    },
};

/// People, labelled by their last name.
struct People;

impl Rows for People {
    async fn create(&self, app: &TestApp, credential: &Credential, label: &str) -> String {
        let created = credential
            .call(
                app,
                "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id lastName } }",
                json!({ "input": { "firstName": "P", "lastName": label } }),
            )
            .await;
        created.data()["createPerson"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn list(&self, app: &TestApp, credential: &Credential) -> (HashMap<String, String>, u64) {
        let listed = credential
            .call(
                app,
                "{ people(first: 100) { totalCount nodes { id lastName } } }",
                json!({}),
            )
            .await;
        let people = &listed.data()["people"];
        (
            nodes_by_id(people, "lastName"),
            people["totalCount"].as_u64().unwrap(),
        )
    }

    async fn attack(
        &self,
        app: &TestApp,
        credential: &Credential,
        foreign: &str,
        rng: &mut StdRng,
    ) {
        let id = json!({ "id": foreign });
        match rng.random_range(0..3) {
            0 => {
                let read = credential
                    .call(app, "query($id: ID!) { person(id: $id) { id } }", id)
                    .await;
                assert!(
                    read.0["data"]["person"].is_null(),
                    "another tenant's person must not be readable: {}",
                    read.0
                );
            }
            1 => {
                let changed = credential
                    .call(
                        app,
                        "mutation($id: ID!) { updatePerson(id: $id, input: { lastName: \"hijacked\" }) { id } }",
                        id,
                    )
                    .await;
                assert_eq!(changed.error_code(), "NOT_FOUND", "{}", changed.0);
            }
            _ => {
                let deleted = credential
                    .call(app, "mutation($id: ID!) { deletePerson(id: $id) }", id)
                    .await;
                assert!(
                    deleted.0["data"].is_null()
                        || deleted.0["data"]["deletePerson"] == json!(false),
                    "{}",
                    deleted.0
                );
            }
        }
    }
}

#[tokio::test]
async fn no_credential_ever_sees_or_changes_another_tenants_people() {
    people_stay_isolated(&TestApp::spawn().await).await;
}

/// The isolation property over people, on `app`.
pub async fn people_stay_isolated(app: &TestApp) {
    no_credential_sees_or_changes_another_tenants_rows(app, &People).await;
}

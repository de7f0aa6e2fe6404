//! Tenant isolation as a property, over any kind of tenant row: several tenants, several
//! credentials each, random operations in random order — and no credential ever sees or changes
//! another tenant's rows. Shared by the built-in server's tests (people) and the parish
//! example's (donations).

use std::collections::HashMap;

use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use serde_json::{Value, json};

use crate::helpers::{Gql, TestApp};

const TENANTS: [&str; 3] = ["iso-a.church", "iso-b.church", "iso-c.church"];
const OPERATIONS: usize = 120;

/// A credential of one tenant: a user token or the tenant's API key.
pub struct Credential {
    pub tenant: usize,
    token: Option<String>,
    api_key: Option<String>,
}

impl Credential {
    /// Posts one GraphQL operation with this credential.
    pub async fn call(&self, app: &TestApp, query: &str, variables: Value) -> Gql {
        let mut request = app
            .http
            .post(app.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = &self.api_key {
            request = request.header("x-api-key", key);
        }
        Gql(request.send().await.unwrap().json().await.unwrap())
    }
}

/// A kind of tenant row the property runs over.
#[allow(async_fn_in_trait)]
pub trait Rows {
    /// Makes a row carrying `label`; returns its id.
    async fn create(&self, app: &TestApp, credential: &Credential, label: &str) -> String;

    /// Every row the credential's tenant lists (id → label), and the count it reports.
    async fn list(&self, app: &TestApp, credential: &Credential) -> (HashMap<String, String>, u64);

    /// Tries to read or change `foreign`, a row of another tenant, and asserts that it is
    /// refused or not found.
    async fn attack(&self, app: &TestApp, credential: &Credential, foreign: &str, rng: &mut StdRng);
}

/// Random operations of several credentials of several tenants on `rows`, checked against a
/// model of what each tenant holds.
pub async fn no_credential_sees_or_changes_another_tenants_rows(app: &TestApp, rows: &impl Rows) {
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

    // The rows each tenant holds, as the test believes it: id → label.
    let mut owned: Vec<HashMap<String, String>> = vec![HashMap::new(); TENANTS.len()];
    let mut rng = StdRng::seed_from_u64(0x7e4a47);
    for step in 0..OPERATIONS {
        let credential = credentials.choose(&mut rng).unwrap();
        let mine = credential.tenant;
        // Someone else's row, when any exists: the target of every cross-tenant attempt.
        let foreign: Vec<String> = owned
            .iter()
            .enumerate()
            .filter(|(tenant, _)| *tenant != mine)
            .flat_map(|(_, rows)| rows.keys().cloned())
            .collect();
        match rng.random_range(0..4) {
            0 | 1 => {
                let label = format!("{}-{step}", TENANTS[mine]);
                let id = rows.create(app, credential, &label).await;
                owned[mine].insert(id, label);
            }
            2 => {
                let (seen, count) = rows.list(app, credential).await;
                assert_eq!(
                    seen, owned[mine],
                    "tenant {} lists exactly its own rows",
                    TENANTS[mine]
                );
                assert_eq!(count, owned[mine].len() as u64);
            }
            _ if !foreign.is_empty() => {
                let id = foreign.choose(&mut rng).unwrap().clone();
                rows.attack(app, credential, &id, &mut rng).await;
            }
            _ => {}
        }
    }

    // Finally, every tenant holds exactly what it made, untouched by the others.
    for (tenant, made) in owned.iter().enumerate() {
        let credential = credentials.iter().find(|c| c.tenant == tenant).unwrap();
        let (seen, _) = rows.list(app, credential).await;
        assert_eq!(&seen, made, "tenant {}", TENANTS[tenant]);
        assert!(
            seen.values()
                .all(|label| label.starts_with(TENANTS[tenant]))
        );
    }
}

/// `id → label` of the nodes of a connection, read with `label` from each node.
pub fn nodes_by_id(connection: &Value, label: &str) -> HashMap<String, String> {
    connection["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                node["id"].as_str().unwrap().to_owned(),
                node[label].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

//! Guard rails: documents that would cost thousands of scans, destructive operations without a
//! confirmation, and what a client may and may not learn from a failure.

use serde_json::json;
use tenantgraph::graphql::MAX_COMPLEXITY;

use crate::helpers::{Gql, TestApp, assert_not_executed, count_statements};

/// `count` aliases of `people(first: page) { totalCount }`.
fn wide_people_query(count: usize, page: usize) -> String {
    let fields: String = (0..count)
        .map(|i| format!("p{i}: people(first: {page}, search: \"a\") {{ totalCount }} "))
        .collect();
    format!("{{ {fields}}}")
}

// The contract's example, 50 aliases of `people(first: 100)`, must not fit.
const _: () = assert!(MAX_COMPLEXITY < 50 * 100);

#[tokio::test]
async fn guard_a_connection_costs_its_page_size_so_wide_documents_are_refused_unrun() {
    let app = TestApp::spawn_with(count_statements).await;
    let tenant = app.with_tenant("wide.example").await;

    let wide = app
        .graphql(&wide_people_query(50, 100), json!({}), Some(&tenant.viewer))
        .await;
    assert_eq!(wide.error_code(), "BAD_USER_INPUT", "{}", wide.0);
    assert!(wide.error_message().contains("too complex"), "{}", wide.0);
    assert!(wide.0["data"].is_null(), "{}", wide.0);
    assert_not_executed(&wide);

    // The document: 280 aliases, ten of them in one HTTP batch.
    let document = wide_people_query(280, 100);
    let batch: Vec<_> = (0..10).map(|_| json!({ "query": document })).collect();
    let answers: serde_json::Value = app
        .post_json(json!(batch), Some(&tenant.viewer))
        .await
        .json()
        .await
        .unwrap();
    for answer in answers.as_array().expect("one answer per operation") {
        let answer = Gql(answer.clone());
        assert_eq!(answer.error_code(), "BAD_USER_INPUT", "{}", answer.0);
        assert_not_executed(&answer);
    }

    // The same fields on small pages fit, and run.
    let narrow = app
        .graphql(&wide_people_query(50, 2), json!({}), Some(&tenant.viewer))
        .await;
    assert_eq!(narrow.data()["p49"]["totalCount"], 0, "{}", narrow.0);

    // A whole page of tenants with every field a dashboard shows fits the budget.
    let page = app
        .graphql(
            "{ tenants(first: 100) { totalCount pageInfo { hasNextPage endCursor }
               edges { cursor node { id tenantName domain tenantType email phone website address
                 city state schemaName schemaProvisioned migrationsApplied status description
                 apiKeyPrefix settings { features limits { users storageGb } } createdAt updatedAt
                 lastActivityAt } } } }",
            json!({}),
            Some(&tenant.operator),
        )
        .await;
    assert_eq!(page.data()["tenants"]["totalCount"], 1, "{}", page.0);
}

//! Tenant templates: managed by operators, applied to new tenants (one by one and in batches),
//! never to the tenants made before a change.

use serde_json::{Value, json};

use crate::{
    batch::provision,
    helpers::{CREATE_TENANT, Gql, TENANT_PASSWORD, TestApp, tenant_input},
};

const TEMPLATE_FIELDS: &str = "id name tenantType settings { features limits { users storageGb requestsPerMinute } } roles { name permissions }";

async fn create_template(app: &TestApp, token: &str, input: Value) -> Gql {
    app.graphql(
        &format!(
            "mutation($input: TenantTemplateInput!) {{ createTenantTemplate(input: $input) {{ {TEMPLATE_FIELDS} }} }}"
        ),
        json!({ "input": input }),
        Some(token),
    )
    .await
}

async fn update_template(app: &TestApp, token: &str, id: &str, input: Value) -> Gql {
    app.graphql(
        &format!(
            "mutation($id: ID!, $input: TenantTemplateInput!) {{ updateTenantTemplate(id: $id, input: $input) {{ {TEMPLATE_FIELDS} }} }}"
        ),
        json!({ "id": id, "input": input }),
        Some(token),
    )
    .await
}

/// A template for `church` tenants: analytics, 50 users, 100 GB, and an `auditor` role.
fn church_template() -> Value {
    json!({
        "name": "Church",
        "tenantType": "church",
        "settings": { "features": ["basic", "analytics"], "limits": { "users": 50, "storageGb": 100 } },
        "roles": [{ "name": "auditor", "permissions": ["roles:read", "people:read"] }],
    })
}

/// The extra roles of a tenant's schema and their permissions, as its own rows say.
async fn template_roles(app: &TestApp, schema: &str) -> Vec<(String, Vec<String>)> {
    use sea_orm::ConnectionTrait;
    app.db()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT r.name, coalesce(array_agg(p.code ORDER BY p.code) FILTER (WHERE p.code IS NOT NULL), '{{}}') AS codes \
                   FROM \"{schema}\".roles r \
                   LEFT JOIN \"{schema}\".role_permissions rp ON rp.role_id = r.id \
                   LEFT JOIN \"{schema}\".permissions p ON p.id = rp.permission_id \
                  WHERE NOT r.is_system GROUP BY r.name ORDER BY r.name"
            ),
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "name").unwrap(),
                row.try_get::<Vec<String>>("", "codes").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn operators_create_list_update_and_delete_templates_with_audit_rows() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let created = create_template(&app, &token, church_template()).await;
    let template = created.data()["createTenantTemplate"].clone();
    assert_eq!(template["name"], "Church");
    assert_eq!(template["tenantType"], "church");
    assert_eq!(
        template["settings"],
        json!({ "features": ["basic", "analytics"], "limits": { "users": 50, "storageGb": 100, "requestsPerMinute": null } })
    );
    assert_eq!(
        template["roles"],
        json!([{ "name": "auditor", "permissions": ["people:read", "roles:read"] }])
    );
    let id = template["id"].as_str().unwrap();

    let listed = app
        .graphql(
            &format!("{{ tenantTemplates {{ {TEMPLATE_FIELDS} }} }}"),
            json!({}),
            Some(&token),
        )
        .await;
    assert_eq!(listed.data()["tenantTemplates"], json!([template]));

    let mut changed = church_template();
    changed["name"] = json!("Church v2");
    changed["roles"] = json!([]);
    let updated = update_template(&app, &token, id, changed).await;
    assert_eq!(updated.data()["updateTenantTemplate"]["name"], "Church v2");
    assert_eq!(updated.data()["updateTenantTemplate"]["roles"], json!([]));

    let deleted = app
        .graphql(
            "mutation($id: ID!) { deleteTenantTemplate(id: $id) }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    assert_eq!(deleted.data()["deleteTenantTemplate"], true);
    let again = app
        .graphql(
            "mutation($id: ID!) { deleteTenantTemplate(id: $id) }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    assert_eq!(again.error_code(), "NOT_FOUND");
    let missing = update_template(&app, &token, id, church_template()).await;
    assert_eq!(missing.error_code(), "NOT_FOUND");
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.audit_events WHERE outcome = 'SUCCESS' \
              AND action IN ('template.create', 'template.update', 'template.delete')"
        )
        .await,
        3
    );

    // Tenant users and anonymous callers are refused.
    let tenant = app.with_tenant("tpl-guard.church").await;
    let refused = create_template(&app, &tenant.admin, church_template()).await;
    assert_eq!(refused.error_code(), "FORBIDDEN");
    let anonymous = app
        .graphql("{ tenantTemplates { id } }", json!({}), None)
        .await;
    assert_eq!(anonymous.error_code(), "UNAUTHENTICATED");
}

#[tokio::test]
async fn template_input_is_checked_field_by_field_and_duplicates_conflict() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let bad = create_template(
        &app,
        &token,
        json!({
            "name": "x".repeat(101),
            "tenantType": "no spaces",
            "settings": { "features": ["teleport"], "limits": { "requestsPerMinute": 0 } },
            "roles": [
                { "name": "admin", "permissions": [] },
                { "name": "bad name", "permissions": [] },
                { "name": "clerk", "permissions": ["people:fly"] },
            ],
        }),
    )
    .await;
    // Every fault is reported (the field's own error last, beside the others).
    let mut fields: Vec<&str> = bad.0["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["extensions"]["code"], "BAD_USER_INPUT", "{e}");
            e["extensions"]["field"].as_str().unwrap()
        })
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "name",
            "roles[0].name",
            "roles[1].name",
            "roles[2].permissions",
            "settings.features",
            "settings.limits.requestsPerMinute",
            "tenantType",
        ]
    );
    let blank = create_template(&app, &token, json!({ "name": "  " })).await;
    assert_eq!(blank.error_field(), Some("name"));
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenant_templates")
            .await,
        0
    );

    create_template(&app, &token, church_template())
        .await
        .data();
    let same_name = create_template(
        &app,
        &token,
        json!({ "name": "CHURCH", "tenantType": "school" }),
    )
    .await;
    assert_eq!(same_name.error_code(), "CONFLICT");
    assert_eq!(same_name.error_field(), Some("name"));
    let same_type = create_template(
        &app,
        &token,
        json!({ "name": "Other", "tenantType": "church" }),
    )
    .await;
    assert_eq!(same_type.error_code(), "CONFLICT");
    assert_eq!(same_type.error_field(), Some("tenantType"));
}

#[tokio::test]
async fn a_new_tenant_of_the_type_gets_the_settings_and_roles_and_a_change_spares_it() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    let template = create_template(&app, &token, church_template()).await;
    let template_id = template.data()["createTenantTemplate"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let domain = "grace.church";
    let mut input = tenant_input(domain);
    input["tenantType"] = json!("church");
    // The tenant's own limit wins over the template's; the rest comes from the template.
    input["settings"] = json!({ "limits": { "users": 7 } });
    input["admin"] = json!({ "email": format!("admin@{domain}"), "password": TENANT_PASSWORD });
    let created = app.create_tenant(&token, input).await;
    assert_eq!(created["tenant"]["status"], "ACTIVE");
    assert_eq!(
        created["tenant"]["settings"],
        json!({ "features": ["basic", "analytics"], "limits": { "users": 7, "storageGb": 100 } })
    );
    let schema = created["tenant"]["schemaName"].as_str().unwrap().to_owned();
    let expected = vec![(
        "auditor".to_owned(),
        vec!["people:read".to_owned(), "roles:read".to_owned()],
    )];
    assert_eq!(template_roles(&app, &schema).await, expected);

    // A user given the template's role holds exactly its permissions.
    let admin = app.tenant_token(domain, &format!("admin@{domain}")).await;
    let made = app
        .graphql(
            "mutation($input: CreateUserInput!) { createUser(input: $input) { roles } }",
            json!({ "input": { "email": "auditor@grace.church", "password": TENANT_PASSWORD, "roles": ["auditor"] } }),
            Some(&admin),
        )
        .await;
    assert_eq!(made.data()["createUser"]["roles"], json!(["auditor"]));
    let auditor = app.tenant_token(domain, "auditor@grace.church").await;
    let roles = app
        .graphql("{ roles { name permissions } }", json!({}), Some(&auditor))
        .await;
    assert!(
        roles.data()["roles"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "auditor", "permissions": ["people:read", "roles:read"] })),
        "{}",
        roles.0
    );
    let users = app
        .graphql("{ users { id } }", json!({}), Some(&auditor))
        .await;
    assert_eq!(users.error_code(), "FORBIDDEN");

    // Changing the template touches neither the tenant's settings nor its roles.
    let mut changed = church_template();
    changed["settings"] = json!({ "features": ["webhooks"], "limits": { "users": 1 } });
    changed["roles"] = json!([{ "name": "treasurer", "permissions": ["settings:read"] }]);
    update_template(&app, &token, &template_id, changed)
        .await
        .data();
    let tenant = app
        .graphql(
            "query($id: ID!) { tenant(id: $id) { settings { features limits { users storageGb } } } }",
            json!({ "id": created["tenant"]["id"] }),
            Some(&token),
        )
        .await;
    assert_eq!(
        tenant.data()["tenant"]["settings"],
        created["tenant"]["settings"]
    );
    assert_eq!(template_roles(&app, &schema).await, expected);

    // A tenant of another type gets nothing of it.
    let plain = app.create_tenant(&token, tenant_input("plain.org")).await;
    assert_eq!(plain["tenant"]["settings"]["features"], json!([]));
    let plain_schema = plain["tenant"]["schemaName"].as_str().unwrap();
    assert!(template_roles(&app, plain_schema).await.is_empty());
}

#[tokio::test]
async fn a_template_named_explicitly_applies_and_an_unknown_one_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    create_template(
        &app,
        &token,
        json!({
            "name": "Reporting pack",
            "settings": { "features": ["reporting"] },
            "roles": [{ "name": "analyst", "permissions": ["people:read"] }],
        }),
    )
    .await
    .data();

    let mut input = tenant_input("named.org");
    input["template"] = json!("reporting PACK");
    let created = app.create_tenant(&token, input).await;
    assert_eq!(
        created["tenant"]["settings"]["features"],
        json!(["reporting"])
    );
    let schema = created["tenant"]["schemaName"].as_str().unwrap();
    assert_eq!(
        template_roles(&app, schema).await,
        vec![("analyst".to_owned(), vec!["people:read".to_owned()])]
    );

    let mut unknown = tenant_input("unknown.org");
    unknown["template"] = json!("No such template");
    let refused = app
        .graphql(CREATE_TENANT, json!({ "input": unknown }), Some(&token))
        .await;
    assert_eq!(refused.error_code(), "BAD_USER_INPUT");
    assert_eq!(refused.error_field(), Some("template"));
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.tenants WHERE domain = 'unknown.org'")
            .await,
        0
    );
}

#[tokio::test]
async fn provision_tenants_applies_the_template_resolved_at_submission() {
    let app = TestApp::spawn().await;
    let token = app.operator_token().await;
    create_template(&app, &token, church_template())
        .await
        .data();
    let mut church = tenant_input("batch-a.church");
    church["tenantType"] = json!("church");
    let mut unknown = tenant_input("batch-b.church");
    unknown["template"] = json!("missing");
    let response = provision(&app, &token, vec![church, unknown], json!({ "wait": true })).await;
    let results = response.data()["provisionTenants"]["results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(results[0]["status"], "SUCCEEDED", "{}", results[0]);
    assert_eq!(results[1]["error"]["code"], "BAD_USER_INPUT");
    let schema = results[0]["schemaName"].as_str().unwrap();
    assert_eq!(
        template_roles(&app, schema).await,
        vec![(
            "auditor".to_owned(),
            vec!["people:read".to_owned(), "roles:read".to_owned()]
        )]
    );
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.tenants WHERE domain = 'batch-a.church' \
              AND settings->'limits'->>'storageGb' = '100' AND settings->'features' ? 'analytics'"
        )
        .await,
        1
    );
    // The stored job input holds the resolved template, not its name: a resumed job does not
    // look the template up again.
    assert_eq!(
        app.scalar(
            "SELECT count(*) FROM public.provisioning_jobs \
              WHERE input->'roles'->0->>'name' = 'auditor' AND input->'tenant'->>'template' IS NULL"
        )
        .await,
        1
    );
}

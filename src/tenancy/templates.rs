//! Templates per tenant type: default settings and extra roles that a new tenant of that type
//! (or a tenant naming the template) starts with. A template is applied when the tenant is
//! created, and again only when an operator asks (`updateTenant(s)` with `template`); changing or
//! deleting it never touches existing tenants by itself.

use chrono::Utc;
use entity::public::tenant_templates;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{Set, Unchanged},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
    sea_query::{Expr, ExprTrait, Func},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Outcome},
    error::{AppError, AppResult},
    primitives::permissions::parse_api_key_scope,
    state::SharedState,
    tenancy::{
        seed::SeedRole,
        validation::{Faults, SettingsDraft, TenantDraft, validate_settings},
    },
};

/// Longest template name, in characters.
pub const MAX_TEMPLATE_NAME_CHARS: usize = 100;
/// Longest role name a template may add, in bytes (role names are looked up up to this length).
pub const MAX_ROLE_NAME_BYTES: usize = 100;
/// Most roles one template may add.
pub const MAX_TEMPLATE_ROLES: usize = 20;
/// The roles every tenant schema is seeded with; a template cannot redefine them.
pub const SEEDED_ROLES: [&str; 3] = ["admin", "member", "viewer"];

/// A template as asked for, before validation.
#[derive(Debug, Clone, Default)]
pub struct TemplateDraft {
    pub name: String,
    pub tenant_type: Option<String>,
    pub settings: Option<SettingsDraft>,
    pub roles: Vec<SeedRole>,
}

/// A draft that passed every check.
struct ValidTemplate {
    name: String,
    tenant_type: Option<String>,
    settings: Value,
    roles: Vec<SeedRole>,
}

fn validate(draft: &TemplateDraft) -> Result<ValidTemplate, Vec<AppError>> {
    let mut faults = Faults::default();
    let name = draft.name.trim().to_owned();
    if name.is_empty() {
        faults.add("name", "name is required");
    } else if name.chars().count() > MAX_TEMPLATE_NAME_CHARS {
        faults.add(
            "name",
            format!("name must be at most {MAX_TEMPLATE_NAME_CHARS} characters"),
        );
    }
    let tenant_type = faults.tenant_type(draft.tenant_type.as_deref());
    let settings = validate_settings(&mut faults, draft.settings.as_ref());
    if draft.roles.len() > MAX_TEMPLATE_ROLES {
        faults.add(
            "roles",
            format!("a template adds at most {MAX_TEMPLATE_ROLES} roles"),
        );
    }
    let mut roles: Vec<SeedRole> = Vec::with_capacity(draft.roles.len());
    for (index, role) in draft.roles.iter().take(MAX_TEMPLATE_ROLES).enumerate() {
        let field = format!("roles[{index}].name");
        let name = role.name.trim();
        if name.is_empty() || name.len() > MAX_ROLE_NAME_BYTES {
            faults.add(
                &field,
                format!("a role name has 1 to {MAX_ROLE_NAME_BYTES} characters"),
            );
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            faults.add(&field, "a role name may hold letters, digits, _ and - only");
        } else if SEEDED_ROLES
            .iter()
            .any(|seeded| seeded.eq_ignore_ascii_case(name))
        {
            faults.add(
                &field,
                format!("{name:?} is a seeded role of every tenant; choose another name"),
            );
        } else if roles.iter().any(|r| r.name.eq_ignore_ascii_case(name)) {
            faults.add(&field, format!("the role {name:?} is named twice"));
        }
        let permissions =
            parse_api_key_scope(&format!("roles[{index}].permissions"), &role.permissions)
                .unwrap_or_else(|err| {
                    faults.push(err);
                    Vec::new()
                });
        roles.push(SeedRole {
            name: name.to_owned(),
            permissions,
        });
    }
    faults.into_result()?;
    Ok(ValidTemplate {
        name,
        tenant_type,
        settings,
        roles,
    })
}

/// Every template, by name.
pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<tenant_templates::Model>> {
    Ok(tenant_templates::Entity::find()
        .order_by_asc(tenant_templates::Column::Name)
        .all(db)
        .await?)
}

/// The template's settings, as a tenant's settings draft.
pub fn settings_of(template: &tenant_templates::Model) -> SettingsDraft {
    SettingsDraft::from_json(&template.settings)
}

/// The roles the template adds.
pub fn roles_of(template: &tenant_templates::Model) -> Vec<SeedRole> {
    serde_json::from_value(template.roles.clone()).unwrap_or_default()
}

/// Saves a new template (`CONFLICT` on its name or tenant type when taken).
pub async fn create(
    state: &SharedState,
    actor: &Actor,
    draft: TemplateDraft,
) -> Result<tenant_templates::Model, Vec<AppError>> {
    let valid = validate(&draft)?;
    let now = Utc::now().fixed_offset();
    let row = tenant_templates::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(valid.name),
        tenant_type: Set(valid.tenant_type),
        settings: Set(valid.settings),
        roles: Set(json!(valid.roles)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    save(state, actor, "template.create", row)
        .await
        .map_err(|e| vec![e])
}

/// Replaces a template's name, type, settings and roles; its tenants keep what they were made
/// with.
pub async fn update(
    state: &SharedState,
    actor: &Actor,
    id: Uuid,
    draft: TemplateDraft,
) -> Result<tenant_templates::Model, Vec<AppError>> {
    let valid = validate(&draft)?;
    let row = tenant_templates::ActiveModel {
        id: Unchanged(id),
        name: Set(valid.name),
        tenant_type: Set(valid.tenant_type),
        settings: Set(valid.settings),
        roles: Set(json!(valid.roles)),
        updated_at: Set(Utc::now().fixed_offset()),
        ..Default::default()
    };
    save(state, actor, "template.update", row)
        .await
        .map_err(|e| vec![e])
}

/// Inserts or updates `row` with its audit row, in one transaction.
async fn save(
    state: &SharedState,
    actor: &Actor,
    action: &str,
    row: tenant_templates::ActiveModel,
) -> AppResult<tenant_templates::Model> {
    let txn = state.db.begin().await?;
    let saved = if action == "template.create" {
        row.insert(&txn).await
    } else {
        row.update(&txn).await
    };
    let saved = match saved {
        Ok(saved) => saved,
        Err(sea_orm::DbErr::RecordNotUpdated) => {
            return Err(AppError::not_found("no such template"));
        }
        Err(err) => {
            return Err(match AppError::from(err) {
                AppError::Conflict { field, .. } => AppError::Conflict {
                    message: match field.as_deref() {
                        Some("tenantType") => "this tenant type has a template already".into(),
                        _ => "a template with this name already exists".into(),
                    },
                    field,
                },
                other => other,
            });
        }
    };
    audit::record(
        &txn,
        actor,
        action,
        None,
        Outcome::Success,
        described(&saved),
    )
    .await;
    txn.commit().await?;
    Ok(saved)
}

/// Deletes a template; the tenants made with it keep their settings and roles.
pub async fn delete(state: &SharedState, actor: &Actor, id: Uuid) -> AppResult<()> {
    let txn = state.db.begin().await?;
    let template = tenant_templates::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such template"))?;
    tenant_templates::Entity::delete_by_id(id)
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        actor,
        "template.delete",
        None,
        Outcome::Success,
        described(&template),
    )
    .await;
    txn.commit().await?;
    Ok(())
}

fn described(template: &tenant_templates::Model) -> Value {
    json!({
        "templateId": template.id,
        "name": template.name,
        "tenantType": template.tenant_type,
    })
}

/// Applies to `draft` the template it names, or else the template of its tenant type: the
/// template's settings under the draft's own (which win key by key), and the template's roles,
/// returned for provisioning. Afterwards the draft names no template, so it can be stored and
/// run again (a resumed batch) with the same result whatever happens to the template.
/// An unknown name is `BAD_USER_INPUT` on `template`.
pub async fn apply(db: &impl ConnectionTrait, draft: &mut TenantDraft) -> AppResult<Vec<SeedRole>> {
    let template = match named(draft.template.take()) {
        Some(name) => Some(find_named(db, &name).await?),
        None => {
            tenant_templates::Entity::find()
                .filter(tenant_templates::Column::TenantType.eq(draft.tenant_type_or_default()))
                .one(db)
                .await?
        }
    };
    let Some(template) = template else {
        return Ok(Vec::new());
    };
    draft.settings = Some(settings_under(&template, draft.settings.take()));
    Ok(roles_of(&template))
}

/// A template name as asked for: trimmed, blank counting as none.
pub fn named(name: Option<String>) -> Option<String> {
    name.map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

/// The template called `name`, without regard to case; an unknown name is `BAD_USER_INPUT` on
/// `template`.
pub async fn find_named(
    db: &impl ConnectionTrait,
    name: &str,
) -> AppResult<tenant_templates::Model> {
    let found = if name.chars().count() > MAX_TEMPLATE_NAME_CHARS {
        None
    } else {
        tenant_templates::Entity::find()
            .filter(
                Expr::expr(Func::lower(Expr::col(tenant_templates::Column::Name)))
                    .eq(Expr::expr(Func::lower(Expr::val(name)))),
            )
            .one(db)
            .await?
    };
    found.ok_or_else(|| {
        AppError::bad_input(
            "template",
            format!(
                "no template named {:?}",
                name.chars().take(40).collect::<String>()
            ),
        )
    })
}

/// `own` settings over the template's: the features list and each limit of `own` win where
/// both set them.
pub fn settings_under(
    template: &tenant_templates::Model,
    own: Option<SettingsDraft>,
) -> SettingsDraft {
    match own {
        Some(own) => own.merged_over(settings_of(template)),
        None => settings_of(template),
    }
}

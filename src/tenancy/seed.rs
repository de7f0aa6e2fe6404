//! The data a migrated tenant schema starts with: its settings row, its super admin and the extra
//! roles of its template. The seeded roles, statuses and permissions come with the migrations
//! that create their tables.

use entity::tenant::{roles, tenant_settings, user_roles, users};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr,
    EntityTrait, QueryFilter, QuerySelect, Statement, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The super admin waiting in the registry for the tenant's schema to be migrated; it holds an
/// argon2id hash, never the password.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingAdmin {
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
}

/// A role a template adds to a new tenant, with its permission codes (validated when the
/// template was saved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRole {
    pub name: String,
    pub permissions: Vec<String>,
}

/// What [`add_roles`] added: the roles it created, and the permissions it granted to roles
/// that were there before. Kept to take them away again ([`remove_roles`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddedRoles {
    pub created: Vec<String>,
    /// `(role, permission code)` pairs granted to roles that existed already.
    pub granted: Vec<(String, String)>,
}

/// Adds a template's roles to the schema `txn` is pinned to: a missing role is created, an
/// existing one of the same name gains the permissions it lacks. Idempotent.
pub async fn add_roles(txn: &DatabaseTransaction, roles: &[SeedRole]) -> Result<AddedRoles, DbErr> {
    let mut added = AddedRoles::default();
    for role in roles {
        let created = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO roles (name, description, is_system) VALUES ($1, 'from the tenant template', false) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
                [role.name.clone().into()],
            ))
            .await?
            .is_some();
        let granted = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "WITH granted AS ( \
                   INSERT INTO role_permissions (role_id, permission_id) \
                   SELECT r.id, p.id FROM roles r JOIN permissions p ON p.code = ANY($2::text[]) \
                    WHERE r.name = $1 \
                   ON CONFLICT DO NOTHING RETURNING permission_id) \
                 SELECT p.code FROM granted g JOIN permissions p ON p.id = g.permission_id",
                [role.name.clone().into(), role.permissions.clone().into()],
            ))
            .await?;
        if created {
            added.created.push(role.name.clone());
        } else {
            for row in granted {
                added
                    .granted
                    .push((role.name.clone(), row.try_get_by_index::<String>(0)?));
            }
        }
    }
    Ok(added)
}

/// Takes away what [`add_roles`] added, in the schema `txn` is pinned to: the roles it created
/// (with their assignments) and the permissions it granted.
pub async fn remove_roles(txn: &DatabaseTransaction, added: &AddedRoles) -> Result<(), DbErr> {
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "DELETE FROM roles WHERE name = ANY($1::text[]) AND NOT is_system",
        [added.created.clone().into()],
    ))
    .await?;
    for (role, code) in &added.granted {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM role_permissions rp USING roles r, permissions p \
              WHERE rp.role_id = r.id AND rp.permission_id = p.id AND r.name = $1 AND p.code = $2",
            [role.clone().into(), code.clone().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Seeds a schema migrated to head, inside `txn` (pinned to that schema). Idempotent: running
/// it twice changes nothing.
pub async fn seed_schema(
    txn: &DatabaseTransaction,
    display_name: &str,
    settings: &Value,
    admin: Option<&PendingAdmin>,
    roles: &[SeedRole],
) -> Result<(), DbErr> {
    add_roles(txn, roles).await?;
    write_settings(
        txn,
        display_name,
        settings,
        OnConflict::column(tenant_settings::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .await?;

    if let Some(admin) = admin {
        let user_id = Uuid::new_v4();
        let inserted = users::Entity::insert(users::ActiveModel {
            id: Set(user_id),
            email: Set(admin.email.clone()),
            password_hash: Set(Some(admin.password_hash.clone())),
            name: Set(admin.name.clone()),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(users::Column::Email)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
        if inserted > 0 {
            let admin_role: i32 = roles::Entity::find()
                .select_only()
                .column(roles::Column::Id)
                .filter(roles::Column::Name.eq("admin"))
                .into_tuple()
                .one(txn)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound("the admin role is not seeded".into()))?;
            user_roles::Entity::insert(user_roles::ActiveModel {
                user_id: Set(user_id),
                role_id: Set(admin_role),
            })
            .exec_without_returning(txn)
            .await?;
        }
    }
    Ok(())
}

/// Gives the settings row (copied from another tenant) this tenant's name, features and limits,
/// as [`seed_schema`] would have written them; its other columns stay as they are.
pub async fn replace_settings(
    txn: &DatabaseTransaction,
    display_name: &str,
    settings: &Value,
) -> Result<(), DbErr> {
    let replaced = OnConflict::column(tenant_settings::Column::Id)
        .update_columns([
            tenant_settings::Column::DisplayName,
            tenant_settings::Column::Features,
            tenant_settings::Column::Limits,
        ])
        .to_owned();
    write_settings(txn, display_name, settings, replaced).await
}

/// Inserts the settings row of `display_name` and the registry's `settings`; an existing row is
/// kept or changed as `on_conflict` says.
async fn write_settings(
    txn: &DatabaseTransaction,
    display_name: &str,
    settings: &Value,
    on_conflict: OnConflict,
) -> Result<(), DbErr> {
    tenant_settings::Entity::insert(tenant_settings::ActiveModel {
        id: Set(true),
        display_name: Set(display_name.to_owned()),
        features: Set(settings
            .get("features")
            .cloned()
            .unwrap_or(Value::Array(vec![]))),
        limits: Set(settings
            .get("limits")
            .cloned()
            .unwrap_or(Value::Object(Default::default()))),
        ..Default::default()
    })
    .on_conflict(on_conflict)
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

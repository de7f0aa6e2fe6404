//! The tenant's own settings row and its roles.

use chrono::Utc;
use entity::tenant::{permissions, role_permissions, roles, tenant_settings};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, QueryOrder, QuerySelect};
use serde_json::json;

use crate::{
    auth::tenant::TenantContext,
    error::{AppError, AppResult},
    state::AppState,
    tenancy::validation::{Faults, SettingsDraft, validate_settings},
};

/// A role with the permission codes it grants.
pub struct RoleWithPermissions {
    pub role: roles::Model,
    pub permissions: Vec<String>,
}

pub async fn roles(
    state: &AppState,
    tenant: &TenantContext,
) -> AppResult<Vec<RoleWithPermissions>> {
    let txn = tenant.begin(&state.db).await?;
    let roles = roles::Entity::find()
        .order_by_asc(roles::Column::Id)
        .all(&txn)
        .await?;
    let grants: Vec<(i32, String)> = role_permissions::Entity::find()
        .select_only()
        .column(role_permissions::Column::RoleId)
        .column(permissions::Column::Code)
        .inner_join(permissions::Entity)
        .order_by_asc(permissions::Column::Code)
        .into_tuple()
        .all(&txn)
        .await?;
    txn.commit().await?;
    Ok(roles
        .into_iter()
        .map(|role| RoleWithPermissions {
            permissions: grants
                .iter()
                .filter(|(role_id, _)| *role_id == role.id)
                .map(|(_, code)| code.clone())
                .collect(),
            role,
        })
        .collect())
}

pub async fn get(state: &AppState, tenant: &TenantContext) -> AppResult<tenant_settings::Model> {
    let txn = tenant.begin(&state.db).await?;
    let settings = tenant_settings::Entity::find_by_id(true).one(&txn).await?;
    txn.commit().await?;
    settings.ok_or_else(|| AppError::not_found("the tenant's settings are not seeded"))
}

#[derive(Default)]
pub struct SettingsChanges {
    pub display_name: Option<String>,
    pub settings: Option<SettingsDraft>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
}

pub async fn update(
    state: &AppState,
    tenant: &TenantContext,
    changes: SettingsChanges,
) -> AppResult<tenant_settings::Model> {
    let mut faults = Faults::default();
    let display_name = faults.name("displayName", changes.display_name, false, 200);
    let timezone = faults.name("timezone", changes.timezone, false, 64);
    let locale = faults.name("locale", changes.locale, false, 35);
    let settings = changes
        .settings
        .map(|draft| validate_settings(&mut faults, Some(&draft)));
    faults.finish()?;
    let mut row = tenant_settings::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(true),
        updated_at: Set(Utc::now().fixed_offset()),
        ..Default::default()
    };
    if let Some(value) = display_name {
        row.display_name = Set(value);
    }
    if let Some(value) = timezone {
        row.timezone = Set(value);
    }
    if let Some(value) = locale {
        row.locale = Set(value);
    }
    if let Some(value) = settings {
        row.features = Set(value.get("features").cloned().unwrap_or(json!([])));
        row.limits = Set(value.get("limits").cloned().unwrap_or(json!({})));
    }
    let txn = tenant.begin(&state.db).await?;
    let updated = match row.update(&txn).await {
        Ok(updated) => updated,
        Err(sea_orm::DbErr::RecordNotUpdated) => {
            return Err(AppError::not_found("the tenant's settings are not seeded"));
        }
        Err(err) => return Err(err.into()),
    };
    txn.commit().await?;
    Ok(updated)
}

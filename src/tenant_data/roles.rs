//! The tenant's roles and the permissions each grants (seeded by the tenant migrations).

use entity::tenant::{permissions, role_permissions, roles};
use sea_orm::{EntityTrait, QueryOrder, QuerySelect};

use crate::{auth::tenant::TenantContext, db::pinned::end_read, error::AppResult, state::AppState};

/// A role with the permission codes it grants.
pub struct RoleWithPermissions {
    pub role: roles::Model,
    pub permissions: Vec<String>,
}

pub async fn list(state: &AppState, tenant: &TenantContext) -> AppResult<Vec<RoleWithPermissions>> {
    let txn = tenant.begin(state).await?;
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
    end_read(txn);
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

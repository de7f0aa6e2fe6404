//! Users of a tenant, their statuses and roles.

use std::collections::HashMap;

use chrono::Utc;
use entity::tenant::{roles, user_roles, user_statuses, users};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::OnConflict,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::{
    auth::{password::check_password_rules, tenant::TenantContext},
    error::{AppError, AppResult},
    state::AppState,
    tenancy::validation::Faults,
};

/// A user with the code of their status (`active`, `inactive`, `suspended`, `pending`).
#[derive(Debug, Clone)]
pub struct User {
    pub model: users::Model,
    pub status: String,
}

pub struct NewUser {
    pub email: String,
    pub password: Option<SecretString>,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub status: Option<String>,
}

#[derive(Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub status: Option<String>,
    pub password: Option<SecretString>,
}

pub async fn list(state: &AppState, tenant: &TenantContext) -> AppResult<Vec<User>> {
    let txn = tenant.begin(&state.db).await?;
    let users = with_status(
        &txn,
        users::Entity::find()
            .order_by_asc(users::Column::CreatedAt)
            .all(&txn)
            .await?,
    )
    .await?;
    txn.commit().await?;
    Ok(users)
}

/// Users by id, for batched look-ups.
pub async fn by_ids(
    state: &AppState,
    tenant: &TenantContext,
    ids: &[Uuid],
) -> AppResult<Vec<User>> {
    let txn = tenant.begin(&state.db).await?;
    let found = users::Entity::find()
        .filter(users::Column::Id.is_in(ids.iter().copied()))
        .all(&txn)
        .await?;
    let users = with_status(&txn, found).await?;
    txn.commit().await?;
    Ok(users)
}

/// Role names of each user, for batched look-ups.
pub async fn roles_of(
    state: &AppState,
    tenant: &TenantContext,
    ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<String>>> {
    let txn = tenant.begin(&state.db).await?;
    let rows: Vec<(Uuid, String)> = user_roles::Entity::find()
        .select_only()
        .column(user_roles::Column::UserId)
        .column(roles::Column::Name)
        .inner_join(roles::Entity)
        .filter(user_roles::Column::UserId.is_in(ids.iter().copied()))
        .order_by_asc(roles::Column::Name)
        .into_tuple()
        .all(&txn)
        .await?;
    txn.commit().await?;
    let mut by_user: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (user_id, role) in rows {
        by_user.entry(user_id).or_default().push(role);
    }
    Ok(by_user)
}

pub async fn create(state: &AppState, tenant: &TenantContext, new: NewUser) -> AppResult<User> {
    let mut faults = Faults::default();
    let email = faults.email("email", &new.email);
    let name = faults.text("name", new.name, 200);
    faults.finish()?;
    let password_hash = match new.password {
        Some(password) => {
            check_password_rules("password", password.expose_secret())?;
            Some(state.passwords.hash(password).await?)
        }
        None => None,
    };
    let txn = tenant.begin(&state.db).await?;
    let status_id = match &new.status {
        Some(code) => status_id(&txn, code).await?,
        None => status_id(&txn, "active").await?,
    };
    let role_ids = role_ids(&txn, &new.roles).await?;
    let user = users::Entity::insert(users::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(email),
        password_hash: Set(password_hash),
        name: Set(name),
        status_id: Set(status_id),
        ..Default::default()
    })
    .exec_with_returning(&txn)
    .await
    .map_err(|err| match AppError::from(err) {
        AppError::Conflict { .. } => AppError::conflict("email", "a user with this email exists"),
        other => other,
    })?;
    for role_id in role_ids {
        grant(&txn, user.id, role_id).await?;
    }
    let created = with_status(&txn, vec![user]).await?.remove(0);
    txn.commit().await?;
    Ok(created)
}

pub async fn update(
    state: &AppState,
    tenant: &TenantContext,
    id: Uuid,
    changes: UserChanges,
) -> AppResult<User> {
    let mut faults = Faults::default();
    let name = faults.text("name", changes.name, 200);
    faults.finish()?;
    let password_hash = match changes.password {
        Some(password) => {
            check_password_rules("password", password.expose_secret())?;
            Some(state.passwords.hash(password).await?)
        }
        None => None,
    };
    let txn = tenant.begin(&state.db).await?;
    let mut row = users::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id),
        updated_at: Set(Utc::now().fixed_offset()),
        ..Default::default()
    };
    if let Some(name) = name {
        row.name = Set(Some(name));
    }
    if let Some(code) = &changes.status {
        row.status_id = Set(status_id(&txn, code).await?);
    }
    if let Some(hash) = password_hash {
        row.password_hash = Set(Some(hash));
    }
    let updated = match row.update(&txn).await {
        Ok(updated) => updated,
        Err(sea_orm::DbErr::RecordNotUpdated) => return Err(AppError::not_found("no such user")),
        Err(err) => return Err(err.into()),
    };
    let user = with_status(&txn, vec![updated]).await?.remove(0);
    txn.commit().await?;
    Ok(user)
}

/// Gives a user a role; giving it twice changes nothing.
pub async fn assign_role(
    state: &AppState,
    tenant: &TenantContext,
    user_id: Uuid,
    role: &str,
) -> AppResult<User> {
    let txn = tenant.begin(&state.db).await?;
    let user = users::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such user"))?;
    let role_id = role_ids(&txn, &[role.to_owned()]).await?.remove(0);
    grant(&txn, user_id, role_id).await?;
    let user = with_status(&txn, vec![user]).await?.remove(0);
    txn.commit().await?;
    Ok(user)
}

async fn grant(txn: &DatabaseTransaction, user_id: Uuid, role_id: i32) -> AppResult<()> {
    user_roles::Entity::insert(user_roles::ActiveModel {
        user_id: Set(user_id),
        role_id: Set(role_id),
    })
    .on_conflict(
        OnConflict::columns([user_roles::Column::UserId, user_roles::Column::RoleId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

async fn status_id(txn: &DatabaseTransaction, code: &str) -> AppResult<i16> {
    user_statuses::Entity::find()
        .filter(user_statuses::Column::Code.eq(code))
        .one(txn)
        .await?
        .map(|status| status.id)
        .ok_or_else(|| {
            AppError::bad_input(
                "status",
                "status must be active, inactive, suspended or pending",
            )
        })
}

async fn role_ids(txn: &DatabaseTransaction, names: &[String]) -> AppResult<Vec<i32>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let role = roles::Entity::find()
            .filter(roles::Column::Name.eq(name.as_str()))
            .one(txn)
            .await?
            .ok_or_else(|| AppError::bad_input("roles", format!("no role named {name:?}")))?;
        ids.push(role.id);
    }
    Ok(ids)
}

async fn with_status(txn: &DatabaseTransaction, users: Vec<users::Model>) -> AppResult<Vec<User>> {
    let codes: HashMap<i16, String> = user_statuses::Entity::find()
        .all(txn)
        .await?
        .into_iter()
        .map(|status| (status.id, status.code))
        .collect();
    Ok(users
        .into_iter()
        .map(|model| User {
            status: codes.get(&model.status_id).cloned().unwrap_or_default(),
            model,
        })
        .collect())
}

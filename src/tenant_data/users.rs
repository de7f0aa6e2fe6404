//! Users of a tenant, their statuses and roles. A change to a user's status, password or roles
//! is announced (see [`crate::db::notify`]) in its own transaction, so that the user's sessions
//! are held against it on the next request, on every server.

use std::collections::HashMap;

use chrono::Utc;
use entity::tenant::{roles, user_roles, user_statuses, users};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::OnConflict,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::{
    auth::{access, tenant::TenantContext},
    db::{
        notify::{self, AccessEvent},
        pinned::{TenantTransaction, end_read},
    },
    error::{AppError, AppResult},
    primitives::credentials::check_password_rules,
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
    let txn = tenant.begin(state).await?;
    let users = with_status(
        users::Entity::find()
            .find_also_related(user_statuses::Entity)
            .order_by_asc(users::Column::CreatedAt)
            .order_by_asc(users::Column::Id)
            .all(&txn)
            .await?,
    );
    end_read(txn);
    Ok(users)
}

/// Users by id, for batched look-ups: one query, statuses joined in.
pub async fn by_ids(
    state: &AppState,
    tenant: &TenantContext,
    ids: &[Uuid],
) -> AppResult<Vec<User>> {
    let txn = tenant.begin(state).await?;
    let users = with_status(
        users::Entity::find()
            .find_also_related(user_statuses::Entity)
            .filter(users::Column::Id.is_in(ids.iter().copied()))
            .all(&txn)
            .await?,
    );
    end_read(txn);
    Ok(users)
}

/// Role names of each user, for batched look-ups.
pub async fn roles_of(
    state: &AppState,
    tenant: &TenantContext,
    ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<String>>> {
    let txn = tenant.begin(state).await?;
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
    end_read(txn);
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
    let status = new.status.as_deref().unwrap_or("active");
    check_status(&mut faults, status);
    check_role_names(&mut faults, "roles", &new.roles);
    faults.finish()?;
    let password_hash = match new.password {
        Some(password) => {
            check_password_rules("password", password.expose_secret())?;
            Some(state.passwords.hash(password).await?)
        }
        None => None,
    };
    let txn = tenant.begin(state).await?;
    let status_id = status_id(&txn, status).await?;
    let role_ids = role_ids(&txn, "roles", &new.roles).await?;
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
    txn.commit().await?;
    Ok(User {
        model: user,
        status: status.to_owned(),
    })
}

pub async fn update(
    state: &AppState,
    tenant: &TenantContext,
    id: Uuid,
    changes: UserChanges,
) -> AppResult<User> {
    let mut faults = Faults::default();
    let name = faults.text("name", changes.name, 200);
    if let Some(status) = &changes.status {
        check_status(&mut faults, status);
    }
    faults.finish()?;
    let password_hash = match changes.password {
        Some(password) => {
            check_password_rules("password", password.expose_secret())?;
            Some(state.passwords.hash(password).await?)
        }
        None => None,
    };
    let narrows_access = changes.status.is_some() || password_hash.is_some();
    let txn = tenant.begin(state).await?;
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
    match row.update(&txn).await {
        Ok(_) => {}
        Err(sea_orm::DbErr::RecordNotUpdated) => return Err(AppError::not_found("no such user")),
        Err(err) => return Err(err.into()),
    }
    let user = fetch(&txn, id).await?;
    if narrows_access {
        commit_user_change(state, tenant, txn, id).await?;
    } else {
        txn.commit().await?;
    }
    Ok(user)
}

/// Commits a change to user `id`'s access and announces it: published for the other servers
/// (in the transaction when the tenant lives on the control database, whose notifications they
/// listen to; else there right after the commit), applied here once committed.
async fn commit_user_change(
    state: &AppState,
    tenant: &TenantContext,
    txn: TenantTransaction,
    id: Uuid,
) -> AppResult<()> {
    let event = AccessEvent::User {
        tenant: tenant.tenant.id,
        id,
    };
    if tenant.tenant.server.is_none() {
        notify::publish(&txn, &event).await?;
        txn.commit().await?;
    } else {
        txn.commit().await?;
        notify::publish(&state.db, &event).await?;
    }
    access::announce(state, event).await;
    Ok(())
}

/// Gives a user a role; giving it twice changes nothing.
pub async fn assign_role(
    state: &AppState,
    tenant: &TenantContext,
    user_id: Uuid,
    role: &str,
) -> AppResult<User> {
    change_role(state, tenant, user_id, role, RoleChange::Grant).await
}

/// Takes a role from a user; taking one they do not have changes nothing. The role stops
/// counting on the user's next request.
pub async fn remove_role(
    state: &AppState,
    tenant: &TenantContext,
    user_id: Uuid,
    role: &str,
) -> AppResult<User> {
    change_role(state, tenant, user_id, role, RoleChange::Revoke).await
}

enum RoleChange {
    Grant,
    Revoke,
}

async fn change_role(
    state: &AppState,
    tenant: &TenantContext,
    user_id: Uuid,
    role: &str,
    change: RoleChange,
) -> AppResult<User> {
    let names = [role.to_owned()];
    let mut faults = Faults::default();
    check_role_names(&mut faults, "role", &names);
    faults.finish()?;
    let txn = tenant.begin(state).await?;
    let user = fetch(&txn, user_id).await?;
    let role_ids = role_ids(&txn, "role", &names).await?;
    match change {
        RoleChange::Grant => {
            for role_id in role_ids {
                grant(&txn, user_id, role_id).await?;
            }
        }
        RoleChange::Revoke => {
            user_roles::Entity::delete_many()
                .filter(user_roles::Column::UserId.eq(user_id))
                .filter(user_roles::Column::RoleId.is_in(role_ids))
                .exec(&txn)
                .await?;
        }
    }
    commit_user_change(state, tenant, txn, user_id).await?;
    Ok(user)
}

/// Longest role name looked up; the seeded ones are far shorter.
const MAX_ROLE_NAME_BYTES: usize = 100;
/// Most roles one request may name.
const MAX_ROLES: usize = 20;

fn check_role_names(faults: &mut Faults, field: &str, names: &[String]) {
    if names.len() > MAX_ROLES {
        faults.add(field, format!("at most {MAX_ROLES} roles"));
    } else if names.iter().any(|name| name.len() > MAX_ROLE_NAME_BYTES) {
        faults.add(
            field,
            format!("a role name is at most {MAX_ROLE_NAME_BYTES} bytes"),
        );
    }
}

const STATUSES: [&str; 4] = ["active", "inactive", "suspended", "pending"];

fn check_status(faults: &mut Faults, code: &str) {
    if !STATUSES.contains(&code) {
        faults.add(
            "status",
            "status must be active, inactive, suspended or pending",
        );
    }
}

/// A user with their status, or `NOT_FOUND`.
async fn fetch(txn: &impl ConnectionTrait, id: Uuid) -> AppResult<User> {
    users::Entity::find_by_id(id)
        .find_also_related(user_statuses::Entity)
        .one(txn)
        .await?
        .map(|row| with_status(vec![row]).remove(0))
        .ok_or_else(|| AppError::not_found("no such user"))
}

async fn grant(txn: &impl ConnectionTrait, user_id: Uuid, role_id: i32) -> AppResult<()> {
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

async fn status_id(txn: &impl ConnectionTrait, code: &str) -> AppResult<i16> {
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

/// The ids of the named roles, in one query; an unknown name is a fault of `field`.
async fn role_ids(
    txn: &impl ConnectionTrait,
    field: &str,
    names: &[String],
) -> AppResult<Vec<i32>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let found: HashMap<String, i32> = roles::Entity::find()
        .filter(roles::Column::Name.is_in(names.iter().map(String::as_str)))
        .all(txn)
        .await?
        .into_iter()
        .map(|role| (role.name, role.id))
        .collect();
    let mut ids = Vec::with_capacity(found.len());
    for name in names {
        let id = *found.get(name).ok_or_else(|| {
            AppError::bad_input(
                field,
                format!(
                    "no role named {:?}",
                    name.chars().take(40).collect::<String>()
                ),
            )
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn with_status(rows: Vec<(users::Model, Option<user_statuses::Model>)>) -> Vec<User> {
    rows.into_iter()
        .map(|(model, status)| User {
            model,
            status: status.map(|status| status.code).unwrap_or_default(),
        })
        .collect()
}

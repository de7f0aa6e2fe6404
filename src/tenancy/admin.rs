//! Administering registered tenants: update them (and undo an update), deactivate and reactivate,
//! delete (keeping or dropping the schema), rotate the API key. Every change evicts the tenant
//! from the authentication cache, so it takes effect at once (and the registry's trigger tells
//! the other servers); deactivating and deleting also end the tenant's sessions.

use chrono::Utc;
use entity::public::tenants;
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait,
    DatabaseTransaction, DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QuerySelect,
    Statement, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::{self, Actor},
    error::{AppError, AppResult},
    primitives::{api_keys, permissions::parse_api_key_scope},
    state::SharedState,
    tenancy::{
        TenantStatus, guard, migrator, record_tenant,
        registry::{described_conflict, find_live, schema_of, update_registry, update_registry_in},
        run_detached,
        seed::{self, AddedRoles, SeedRole},
        servers, templates,
        validation::{SettingsDraft, TenantDraft, validate_new_tenant},
    },
};

/// Ends every live session of a tenant (users have to log in again once it is back); returns how
/// many there were. Runs in the caller's transaction.
pub async fn end_tenant_sessions(
    conn: &impl ConnectionTrait,
    tenant_id: Uuid,
    reason: &str,
) -> AppResult<u64> {
    Ok(conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE public.sessions SET revoked_at = now(), revoked_reason = $2 \
              WHERE tenant_id = $1 AND revoked_at IS NULL",
            [tenant_id.into(), reason.into()],
        ))
        .await?
        .rows_affected())
}

/// Turns a tenant off: its tokens and keys stop working, its sessions end.
#[tracing::instrument(
    name = "set tenant active",
    skip_all,
    fields(tenant_id = %tenant_id, schema = tracing::field::Empty)
)]
pub async fn set_active(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    active: bool,
) -> AppResult<tenants::Model> {
    let tenant = find_live(&state.db, tenant_id).await?;
    record_tenant(&tenant);
    let (status, clear_reason) = activation(&tenant, active, "id")?;
    // Fenced on the tenant's server before the registry says so, released after.
    if !active {
        servers::mark_placement(state, &tenant, status).await?;
    }
    let changed = async {
        let txn = state.db.begin().await?;
        let changed = update_registry_in(&txn, tenant.id, |row| {
            row.status = Set(status);
            if clear_reason {
                row.failure_reason = Set(None);
            }
        })
        .await?;
        let sessions_ended = if active {
            0
        } else {
            end_tenant_sessions(&txn, changed.id, "tenant deactivated").await?
        };
        audit_activation(&txn, actor, &changed, active, sessions_ended).await;
        txn.commit().await?;
        AppResult::Ok(changed)
    }
    .await;
    state.directory.forget(tenant.id).await;
    match changed {
        Ok(changed) => {
            servers::mark_placement(state, &changed, changed.status).await?;
            Ok(changed)
        }
        Err(err) => {
            // The registry kept its word: so does the fence (best effort; a tenant fenced
            // meanwhile is refused, never let through).
            let _ = servers::mark_placement(state, &tenant, tenant.status).await;
            Err(err)
        }
    }
}

/// The status that turning `tenant` on or off gives it, and whether its `failureReason` goes.
/// A tenant parked below head by a migration cannot be turned on (`BAD_USER_INPUT` on `field`):
/// going back to head does that.
fn activation(
    tenant: &tenants::Model,
    active: bool,
    field: &str,
) -> AppResult<(TenantStatus, bool)> {
    let parked = guard::parked_below_head(tenant);
    if active && parked {
        return Err(AppError::bad_input(
            field,
            "the tenant's schema is below head: migrating it back to head reactivates it",
        ));
    }
    let status = match (
        active,
        tenant.migrations_applied && tenant.schema_provisioned,
    ) {
        (false, _) => TenantStatus::Inactive,
        (true, true) => TenantStatus::Active,
        (true, false) => TenantStatus::Pending,
    };
    // Deactivated by an operator: going back to head no longer reactivates it.
    Ok((status, !active && parked))
}

async fn audit_activation(
    db: &impl ConnectionTrait,
    actor: &Actor,
    tenant: &tenants::Model,
    active: bool,
    sessions_ended: u64,
) {
    let (action, detail) = if active {
        ("tenant.reactivate", json!({}))
    } else {
        (
            "tenant.deactivate",
            json!({ "sessionsEnded": sessions_ended }),
        )
    };
    audit::tenant_success(db, actor, action, tenant, detail).await;
}

/// Deletes a tenant. With `drop_schema` its data goes too; otherwise the schema is kept for a
/// restore and the tenant's domain and schema name stay reserved.
#[tracing::instrument(
    name = "delete tenant",
    skip_all,
    fields(tenant_id = %tenant_id, schema = tracing::field::Empty)
)]
pub async fn delete(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    drop_schema: bool,
) -> AppResult<tenants::Model> {
    let tenant = find_live(&state.db, tenant_id).await?;
    record_tenant(&tenant);
    let schema = schema_of(&tenant);
    let task_state = state.clone();
    let task_actor = actor.clone();
    let task_tenant = tenant.clone();
    let task_tenant_id = tenant.id;
    let result: AppResult<()> = run_detached("delete", async move {
        // On another server: fenced there (or dropped with its schema) before the registry
        // lets go of it.
        let placed_elsewhere = task_tenant.server_name.is_some();
        if placed_elsewhere {
            if drop_schema {
                servers::drop_placed_schema(&task_state, &task_tenant).await?;
            } else {
                servers::mark_placement(&task_state, &task_tenant, TenantStatus::Inactive).await?;
            }
        }
        let txn = task_state.db.begin().await?;
        let sessions_ended = end_tenant_sessions(&txn, task_tenant.id, "tenant deleted").await?;
        let deleted = if drop_schema {
            if !placed_elsewhere {
                migrator::lock_schema(&txn, &schema).await?;
                txn.execute_unprepared(&format!(
                    "DROP SCHEMA IF EXISTS {} CASCADE",
                    schema.quoted()
                ))
                .await?;
            }
            tenants::Entity::delete_by_id(task_tenant.id)
                .exec(&txn)
                .await?;
            task_tenant
        } else {
            let mut row = task_tenant.into_active_model();
            row.status = Set(TenantStatus::Inactive);
            row.deleted_at = Set(Some(Utc::now().fixed_offset()));
            row.updated_at = Set(Utc::now().fixed_offset());
            row.update(&txn).await?
        };
        audit::tenant_success(
            &txn,
            &task_actor,
            "tenant.delete",
            &deleted,
            json!({ "dropSchema": drop_schema, "sessionsEnded": sessions_ended }),
        )
        .await;
        txn.commit().await?;
        task_state.directory.forget(task_tenant_id).await;
        Ok(())
    })
    .await?;
    match result {
        Ok(()) => Ok(tenant),
        Err(err) => {
            audit::failure(&state.db, actor, "tenant.delete", Some(tenant.id), &err).await;
            Err(err)
        }
    }
}

/// Replaces the tenant's API key; the old one stops working at once, on every server (the
/// registry's trigger announces the change). The new key has the scope `permissions` names
/// (checked: unknown codes are `BAD_USER_INPUT` on `permissions`), or the old key's scope.
#[tracing::instrument(
    name = "rotate tenant api key",
    skip_all,
    fields(tenant_id = %tenant_id, schema = tracing::field::Empty)
)]
pub async fn rotate_api_key(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    permissions: Option<&[String]>,
) -> AppResult<String> {
    let scope = permissions
        .map(|codes| parse_api_key_scope("permissions", codes))
        .transpose()?;
    let tenant = find_live(&state.db, tenant_id).await?;
    record_tenant(&tenant);
    let key = api_keys::generate(&state.config.api_key_prefix);
    let tenant = update_registry(state, tenant.id, |row| {
        row.api_key_hash = Set(Some(key.hash.clone()));
        row.api_key_prefix = Set(Some(key.display_prefix.clone()));
        row.api_key_created_at = Set(Some(Utc::now().fixed_offset()));
        if let Some(scope) = &scope {
            row.api_key_permissions = Set(json!(scope));
        }
    })
    .await?;
    audit::tenant_success(
        &state.db,
        actor,
        "tenant.rotate_api_key",
        &tenant,
        json!({ "prefix": key.display_prefix, "permissions": tenant.api_key_permissions }),
    )
    .await;
    Ok(key.key)
}

/// Changes to a tenant; absent fields stay as they are. Stored with the jobs of a bulk update.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPatch {
    pub tenant_name: Option<String>,
    pub domain: Option<String>,
    pub email: Option<String>,
    pub tenant_type: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub description: Option<String>,
    pub settings: Option<SettingsDraft>,
    /// Turns the tenant on or off, as `reactivateTenant` and `deactivateTenant` do.
    pub active: Option<bool>,
    /// A template to apply again, by name; [`resolve_template`] turns it into `settings` and
    /// `roles`.
    #[serde(skip)]
    pub template: Option<String>,
    /// Roles to add to the tenant's schema (a template's).
    #[serde(default)]
    pub roles: Vec<SeedRole>,
}

impl TenantPatch {
    /// The fields set that belong to one tenant alone, so that a change to many tenants at once
    /// cannot set them: its identity and contact details.
    pub fn own_fields(&self) -> Vec<&'static str> {
        [
            ("tenantName", self.tenant_name.is_some()),
            ("domain", self.domain.is_some()),
            ("email", self.email.is_some()),
            ("phone", self.phone.is_some()),
            ("website", self.website.is_some()),
            ("address", self.address.is_some()),
            ("city", self.city.is_some()),
            ("state", self.state.is_some()),
            ("description", self.description.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect()
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.own_fields().is_empty()
            && self.tenant_type.is_none()
            && self.settings.is_none()
            && self.active.is_none()
            && self.template.is_none()
            && self.roles.is_empty()
    }
}

/// Resolves the template the patch names (`BAD_USER_INPUT` on `template` when unknown): its
/// settings go under the patch's own, which win key by key, and its roles are to be added.
/// Afterwards the patch names no template, so it gives the same result whatever becomes of the
/// template.
pub async fn resolve_template(state: &SharedState, patch: &mut TenantPatch) -> AppResult<()> {
    let Some(name) = templates::named(patch.template.take()) else {
        return Ok(());
    };
    let template = templates::find_named(&state.db, &name).await?;
    patch.settings = Some(templates::settings_under(&template, patch.settings.take()));
    patch.roles = templates::roles_of(&template);
    Ok(())
}

/// How to take an update back: what a bulk update may change (settings, type, status) before
/// and after it, and the roles it added ([`undo`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Undo {
    pub before: Changeable,
    pub after: Changeable,
    /// What the update added to the tenant's roles.
    pub roles: AddedRoles,
}

/// The parts of a tenant that a bulk update may change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Changeable {
    pub settings: serde_json::Value,
    pub tenant_type: String,
    /// The stored status, and the reason that goes with it.
    pub status: String,
    pub failure_reason: Option<String>,
}

impl Changeable {
    fn of(tenant: &tenants::Model) -> Self {
        Changeable {
            settings: tenant.settings.clone(),
            tenant_type: tenant.tenant_type.clone(),
            status: tenant.status.as_db().to_owned(),
            failure_reason: tenant.failure_reason.clone(),
        }
    }
}

/// Updates a tenant under the same rules as creation. The schema name never changes: it is
/// where the data lives.
pub async fn update(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    patch: TenantPatch,
) -> Result<tenants::Model, Vec<AppError>> {
    update_noting(state, actor, tenant_id, patch, |_| None)
        .await
        .map(|(tenant, _)| tenant)
}

/// [`update`], running the statement `note` makes of the [`Undo`] in the update's own
/// transaction, so that the change and the note of how to take it back commit together or not
/// at all (a bulk update stores it with the tenant's job). Returns the tenant as updated and
/// its undo.
#[tracing::instrument(
    name = "update tenant",
    skip_all,
    fields(tenant_id = %tenant_id, schema = tracing::field::Empty)
)]
pub async fn update_noting(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    mut patch: TenantPatch,
    note: impl FnOnce(&Undo) -> Option<Statement>,
) -> Result<(tenants::Model, Undo), Vec<AppError>> {
    resolve_template(state, &mut patch)
        .await
        .map_err(|e| vec![e])?;
    let current = find_live(&state.db, tenant_id).await.map_err(|e| vec![e])?;
    record_tenant(&current);
    // The outer error is a failure of the change; the inner one input refused before it.
    // Deactivated: fenced on the tenant's server before the registry says so.
    if patch.active == Some(false) {
        servers::mark_placement(state, &current, TenantStatus::Inactive)
            .await
            .map_err(|e| vec![e])?;
    }
    let updated: AppResult<Result<_, Vec<AppError>>> = async {
        // Pinned to the tenant's schema for its roles; the registry is named with its schema.
        let (txn, elsewhere) = servers::begin_placed(state, &current).await?;
        let registry = elsewhere.as_ref().unwrap_or(&txn);
        let current = lock_live(registry, tenant_id).await?;
        let prefix = &state.config.tenant_schema_prefix;
        let valid = match validate_new_tenant(&patched_draft(&current, &patch), prefix) {
            Ok(valid) => valid,
            Err(faults) => return Ok(Err(faults)),
        };
        let activation = match patch.active {
            Some(active) => match activation(&current, active, "status") {
                Ok((status, clear_reason)) => Some((active, status, clear_reason)),
                Err(fault) => return Ok(Err(vec![fault])),
            },
            None => None,
        };
        let tenant = update_registry_in(registry, tenant_id, |row| {
            row.tenant_name = Set(valid.tenant_name);
            row.domain = Set(valid.domain);
            row.email = Set(valid.email);
            row.tenant_type = Set(valid.tenant_type);
            row.phone = Set(valid.phone);
            row.website = Set(valid.website);
            row.address = Set(valid.address);
            row.city = Set(valid.city);
            row.state = Set(valid.state);
            row.description = Set(valid.description);
            row.settings = Set(valid.settings);
            if let Some((_, status, clear_reason)) = activation {
                row.status = Set(status);
                if clear_reason {
                    row.failure_reason = Set(None);
                }
            }
        })
        .await?;
        let sessions_ended = match activation {
            Some((false, ..)) => {
                end_tenant_sessions(registry, tenant_id, "tenant deactivated").await?
            }
            _ => 0,
        };
        let undo = Undo {
            before: Changeable::of(&current),
            after: Changeable::of(&tenant),
            roles: seed::add_roles(&txn, &patch.roles).await?,
        };
        if let Some(statement) = note(&undo) {
            registry.execute_raw(statement).await?;
        }
        // Audited in the change's transaction: a job resumed after a stop never audits twice.
        let detail = json!({ "rolesAdded": undo.roles.created });
        audit::tenant_success(registry, actor, "tenant.update", &tenant, detail).await;
        if let Some((active, ..)) = activation.filter(|_| tenant.status != current.status) {
            audit_activation(registry, actor, &tenant, active, sessions_ended).await;
        }
        servers::commit_placed(txn, elsewhere, &tenant).await?;
        state.directory.forget(tenant_id).await;
        Ok(Ok((tenant, undo)))
    }
    .await;
    // The fence follows what the registry says now, whatever became of the change.
    if current.server_name.is_some() {
        let now = find_live(&state.db, tenant_id).await.map_err(|e| vec![e])?;
        servers::mark_placement(state, &now, now.status)
            .await
            .map_err(|e| vec![e])?;
    }
    match updated {
        Ok(Ok(updated)) => Ok(updated),
        Ok(Err(faults)) => Err(faults),
        Err(err) => {
            let err = described_conflict(err);
            audit::failure(&state.db, actor, "tenant.update", Some(tenant_id), &err).await;
            Err(vec![err])
        }
    }
}

/// Puts back what an update changed (see [`Undo`]), in one transaction: a bulk update that is
/// rolled back. A part changed again since (by someone else) keeps that change; a tenant
/// deleted since has nothing to put back.
#[tracing::instrument(
    name = "undo tenant update",
    skip_all,
    fields(tenant_id = %tenant_id, schema = tracing::field::Empty)
)]
pub async fn undo(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    undo: &Undo,
) -> AppResult<()> {
    let current = match find_live(&state.db, tenant_id).await {
        Ok(current) => current,
        Err(AppError::NotFound(_)) => return Ok(()),
        Err(err) => return Err(err),
    };
    record_tenant(&current);
    let (before, after) = (&undo.before, &undo.after);
    let status = TenantStatus::try_from_value(&before.status).map_err(AppError::from)?;
    if status != TenantStatus::Active {
        servers::mark_placement(state, &current, status).await?;
    }
    let (txn, elsewhere) = servers::begin_placed(state, &current).await?;
    let registry = elsewhere.as_ref().unwrap_or(&txn);
    let now = Changeable::of(&lock_live(registry, tenant_id).await?);
    let mut kept = Vec::new();
    let tenant = update_registry_in(registry, tenant_id, |row| {
        if now.settings == after.settings {
            row.settings = Set(before.settings.clone());
        } else {
            kept.push("settings");
        }
        if now.tenant_type == after.tenant_type {
            row.tenant_type = Set(before.tenant_type.clone());
        } else {
            kept.push("tenantType");
        }
        if (&now.status, &now.failure_reason) == (&after.status, &after.failure_reason) {
            row.status = Set(status);
            row.failure_reason = Set(before.failure_reason.clone());
        } else {
            kept.push("status");
        }
    })
    .await?;
    seed::remove_roles(&txn, &undo.roles).await?;
    let detail = json!({ "undone": true, "changedSince": kept });
    audit::tenant_success(registry, actor, "tenant.update", &tenant, detail).await;
    servers::commit_placed(txn, elsewhere, &tenant).await?;
    state.directory.forget(tenant_id).await;
    Ok(())
}

/// The live tenant's row, locked until `txn` ends so that concurrent changes queue behind it.
async fn lock_live(txn: &DatabaseTransaction, tenant_id: Uuid) -> AppResult<tenants::Model> {
    tenants::Entity::find_by_id(tenant_id)
        .filter(tenants::Column::DeletedAt.is_null())
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such tenant"))
}

/// The tenant as `patch` would leave it, as a draft to validate.
fn patched_draft(current: &tenants::Model, patch: &TenantPatch) -> TenantDraft {
    let patch = patch.clone();
    let settings = patch
        .settings
        .unwrap_or_default()
        .merged_over(SettingsDraft::from_json(&current.settings));
    TenantDraft {
        tenant_name: patch
            .tenant_name
            .unwrap_or_else(|| current.tenant_name.clone()),
        domain: patch.domain.unwrap_or_else(|| current.domain.clone()),
        email: patch.email.unwrap_or_else(|| current.email.clone()),
        tenant_type: patch
            .tenant_type
            .or_else(|| Some(current.tenant_type.clone())),
        phone: patch.phone.or_else(|| current.phone.clone()),
        website: patch.website.or_else(|| current.website.clone()),
        address: patch.address.or_else(|| current.address.clone()),
        city: patch.city.or_else(|| current.city.clone()),
        state: patch.state.or_else(|| current.state.clone()),
        schema_name: Some(current.schema_name.clone()),
        description: patch.description.or_else(|| current.description.clone()),
        settings: Some(settings),
        admin: None,
        // The key's scope changes only with the key (`rotateApiKey`).
        api_key_permissions: None,
        template: None,
        server: None,
    }
}

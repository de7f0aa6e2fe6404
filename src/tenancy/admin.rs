//! Administering registered tenants: update their registry entry, deactivate and reactivate,
//! delete (keeping or dropping the schema), rotate the API key. Every change evicts the tenant
//! from the authentication cache, so it takes effect at once (and the registry's trigger tells
//! the other servers); deactivating and deleting also end the tenant's sessions.

use chrono::Utc;
use entity::public::tenants;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel,
    Statement, TransactionTrait,
};
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
    if active && guard::parked_below_head(&tenant) {
        return Err(AppError::bad_input(
            "id",
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
    let txn = state.db.begin().await?;
    let tenant = update_registry_in(&txn, tenant.id, |row| {
        row.status = Set(status);
        if !active && guard::parked_below_head(&tenant) {
            // Deactivated by an operator: going back to head no longer reactivates it.
            row.failure_reason = Set(None);
        }
    })
    .await?;
    let sessions_ended = if active {
        0
    } else {
        end_tenant_sessions(&txn, tenant.id, "tenant deactivated").await?
    };
    let action = if active {
        "tenant.reactivate"
    } else {
        "tenant.deactivate"
    };
    let detail = if active {
        json!({})
    } else {
        json!({ "sessionsEnded": sessions_ended })
    };
    audit::tenant_success(&txn, actor, action, &tenant, detail).await;
    txn.commit().await?;
    state.directory.forget(tenant.id).await;
    Ok(tenant)
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
        let txn = task_state.db.begin().await?;
        let sessions_ended = end_tenant_sessions(&txn, task_tenant.id, "tenant deleted").await?;
        let deleted = if drop_schema {
            migrator::lock_schema(&txn, &schema).await?;
            txn.execute_unprepared(&format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                schema.quoted()
            ))
            .await?;
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

/// Changes to a tenant's registry entry; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
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
}

/// Updates a tenant's registry entry under the same rules as creation. The schema name never
/// changes: it is where the data lives.
#[tracing::instrument(
    name = "update tenant",
    skip_all,
    fields(tenant_id = %tenant_id, schema = tracing::field::Empty)
)]
pub async fn update(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    patch: TenantPatch,
) -> Result<tenants::Model, Vec<AppError>> {
    let current = find_live(&state.db, tenant_id).await.map_err(|e| vec![e])?;
    record_tenant(&current);
    let settings = patch
        .settings
        .unwrap_or_default()
        .merged_over(SettingsDraft::from_json(&current.settings));
    let draft = TenantDraft {
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
    };
    let valid = validate_new_tenant(&draft, &state.config.tenant_schema_prefix)?;
    let updated = async {
        let txn = state.db.begin().await?;
        let tenant = update_registry_in(&txn, tenant_id, |row| {
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
        })
        .await?;
        audit::tenant_success(&txn, actor, "tenant.update", &tenant, json!({})).await;
        txn.commit().await?;
        AppResult::Ok(tenant)
    }
    .await;
    state.directory.forget(tenant_id).await;
    match updated {
        Ok(tenant) => Ok(tenant),
        Err(err) => {
            let err = described_conflict(err);
            audit::failure(&state.db, actor, "tenant.update", Some(tenant_id), &err).await;
            Err(vec![err])
        }
    }
}

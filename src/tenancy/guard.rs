//! Confirmations for operations that destroy data, and what a schema below head means for its
//! tenant.
//!
//! Dropping a tenant's schema (`deleteTenant(dropSchema: true)`, `provisionSchema(forceRecreate:
//! true)`) and migrating it down need `confirm` equal to the tenant's schema name; a fleet
//! migration below head needs `confirm` equal to the target revision. A wrong or missing
//! confirmation is a `BAD_USER_INPUT` on `confirm`, checked before anything is changed.
//!
//! An `ACTIVE` tenant whose schema is moved below head becomes `INACTIVE` with a
//! `failureReason` starting with [`BELOW_HEAD`], which refuses its tenant traffic; migrating it
//! back to head makes it `ACTIVE` again. Deactivated tenants stay deactivated either way.

use entity::public::tenants;
use uuid::Uuid;

use crate::{
    error::{AppError, AppResult},
    state::SharedState,
    tenancy::{
        migrator::{self, Target},
        registry::{find_live, schema_of},
    },
};

/// How the registry's `failureReason` of a tenant parked below head starts.
pub const BELOW_HEAD: &str = "schema below head";

/// `confirm` must be exactly `expected`.
pub fn require_confirmation(confirm: Option<&str>, expected: &str, what: &str) -> AppResult<()> {
    if confirm == Some(expected) {
        return Ok(());
    }
    Err(AppError::bad_input(
        "confirm",
        format!("{what} destroys data: pass confirm: \"{expected}\" to go ahead"),
    ))
}

/// For an operation that drops the tenant's schema: `confirm` must be its schema name.
pub async fn confirm_schema_drop(
    state: &SharedState,
    tenant_id: Uuid,
    confirm: Option<&str>,
    what: &str,
) -> AppResult<()> {
    let tenant = find_live(&state.db, tenant_id).await?;
    require_confirmation(confirm, &tenant.schema_name, what)
}

/// For a migration of one tenant: going below its current revision needs `confirm` equal to its
/// schema name.
pub async fn confirm_single_migration(
    state: &SharedState,
    tenant_id: Uuid,
    target: &Target,
    confirm: Option<&str>,
) -> AppResult<()> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let schema = schema_of(&tenant);
    if !migrator::schema_exists(&state.db, &schema).await? {
        return Ok(());
    }
    let current = migrator::status(&state.db, &schema).await?;
    if target.applied_count() < current.applied.len() {
        require_confirmation(
            confirm,
            &tenant.schema_name,
            "migrating below the current revision",
        )?;
    }
    Ok(())
}

/// For a fleet migration: a target below head needs `confirm` equal to the target revision.
pub fn confirm_fleet_migration(
    target: &Target,
    target_revision: &str,
    confirm: Option<&str>,
) -> AppResult<()> {
    if target.is_below_head() {
        require_confirmation(confirm, target_revision, "migrating tenants below head")?;
    }
    Ok(())
}

/// Whether the tenant was parked below head by a migration (not deactivated by an operator).
pub fn parked_below_head(tenant: &tenants::Model) -> bool {
    tenant
        .failure_reason
        .as_deref()
        .is_some_and(|reason| reason.starts_with(BELOW_HEAD))
}

/// The `failureReason` of a tenant parked at `revision`.
pub fn below_head_reason(revision: Option<&str>) -> String {
    format!(
        "{BELOW_HEAD} (at {}): tenant traffic is refused until it is migrated back to head",
        revision.unwrap_or("base")
    )
}

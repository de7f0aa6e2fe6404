//! The tenant's own settings row (`tenant_settings`, one row).

use chrono::Utc;
use entity::tenant::tenant_settings;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, QuerySelect};
use serde_json::json;

use crate::{
    auth::tenant::TenantContext,
    error::{AppError, AppResult},
    state::AppState,
    tenancy::validation::{Faults, SettingsDraft, validate_settings},
};

pub async fn get(state: &AppState, tenant: &TenantContext) -> AppResult<tenant_settings::Model> {
    let settings = tenant
        .read(state, tenant_settings::Entity::find_by_id(true))
        .await?;
    settings
        .into_iter()
        .next()
        .ok_or_else(|| AppError::not_found("the tenant's settings are not seeded"))
}

/// Changes to the settings row; absent parts keep their value, and so do absent limits.
#[derive(Default)]
pub struct SettingsChanges {
    pub display_name: Option<String>,
    /// `features` replace the list; each given limit replaces its value.
    pub settings: Option<SettingsDraft>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
}

/// Applies `changes` to the settings row, under a row lock so that concurrent changes to
/// different parts do not undo each other. Features and limits are checked as the registry
/// checks them; the registry's own copy is left alone.
pub async fn update(
    state: &AppState,
    tenant: &TenantContext,
    changes: SettingsChanges,
) -> AppResult<tenant_settings::Model> {
    let mut faults = Faults::default();
    let display_name = faults.name("displayName", changes.display_name, false, 200);
    let timezone = faults.name("timezone", changes.timezone, false, 64);
    let locale = faults.name("locale", changes.locale, false, 35);
    faults.finish()?;
    if let Some(draft) = &changes.settings {
        if draft
            .limits
            .as_ref()
            .is_some_and(|limits| limits.requests_per_minute.is_some())
        {
            return Err(AppError::bad_input(
                "limits.requestsPerMinute",
                "the request rate is set by the platform's operators (updateTenant)",
            ));
        }
        let mut faults = Faults::default();
        validate_settings(&mut faults, Some(draft));
        if let Err(mut faults) = faults.into_result() {
            return Err(unprefixed(faults.remove(0)));
        }
    }
    let txn = tenant.begin(state).await?;
    let current = tenant_settings::Entity::find_by_id(true)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("the tenant's settings are not seeded"))?;
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
    if let Some(draft) = changes.settings {
        let merged = draft.merged_over(SettingsDraft::from_json(&json!({
            "features": current.features,
            "limits": current.limits,
        })));
        // Already checked, and the stored values were when they were written.
        let value = validate_settings(&mut Faults::default(), Some(&merged));
        row.features = Set(value.get("features").cloned().unwrap_or(json!([])));
        row.limits = Set(value.get("limits").cloned().unwrap_or(json!({})));
    }
    let updated = row.update(&txn).await?;
    txn.commit().await?;
    Ok(updated)
}

/// The registry names its settings faults `settings.features`, `settings.limits.users`; this
/// input has them at the top: `features`, `limits.users`.
fn unprefixed(fault: AppError) -> AppError {
    match fault {
        AppError::BadUserInput {
            field: Some(field),
            message,
        } => AppError::BadUserInput {
            field: Some(
                field
                    .strip_prefix("settings.")
                    .map(str::to_owned)
                    .unwrap_or(field),
            ),
            message,
        },
        other => other,
    }
}

//! Webhooks: operators subscribe a URL to tenant life-cycle events, and every server delivers
//! them, signed, from an outbox.
//!
//! - [`outbox`] writes one delivery per subscribed webhook in the transaction of the change the
//!   event announces (through the audit trail, [`crate::audit::record`]), so an event exists if
//!   and only if its change committed.
//! - [`sender`] claims due deliveries (`FOR UPDATE SKIP LOCKED`, with a lease), POSTs them with
//!   an HMAC signature and retries failures with backoff until the attempts run out.
//! - [`address`] keeps webhooks off private, loopback and link-local addresses, both when a
//!   webhook is created and at every send (after resolving the host).

pub mod address;
pub mod outbox;
pub mod sender;

use chrono::Utc;
use entity::public::{webhook_deliveries, webhooks};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Outcome},
    config::Config,
    error::{AppError, AppResult},
    state::SharedState,
};

/// Longest webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Shortest and longest signing secret, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
pub const MAX_SECRET_BYTES: usize = 256;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1000;
/// Most deliveries `Webhook.deliveries` lists at once.
pub const MAX_DELIVERIES_PAGE: u64 = 100;

/// The events a webhook may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
pub enum Event {
    /// A tenant was registered (with or without its schema) or restored from a backup.
    #[strum(serialize = "tenant.created")]
    TenantCreated,
    /// A tenant's schema reached head and was seeded: the tenant became `ACTIVE` for the first
    /// time.
    #[strum(serialize = "tenant.provisioned")]
    TenantProvisioned,
    /// Provisioning or migrating a tenant failed.
    #[strum(serialize = "tenant.failed")]
    TenantFailed,
    /// A tenant's registry entry changed, or it was reactivated.
    #[strum(serialize = "tenant.updated")]
    TenantUpdated,
    #[strum(serialize = "tenant.deactivated")]
    TenantDeactivated,
    #[strum(serialize = "tenant.deleted")]
    TenantDeleted,
    /// A tenant's schema was migrated (up or down) to a target revision.
    #[strum(serialize = "tenant.migrated")]
    TenantMigrated,
    /// A provisioning, migration or update batch ended.
    #[strum(serialize = "batch.finished")]
    BatchFinished,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::TenantCreated,
        Event::TenantProvisioned,
        Event::TenantFailed,
        Event::TenantUpdated,
        Event::TenantDeactivated,
        Event::TenantDeleted,
        Event::TenantMigrated,
        Event::BatchFinished,
    ];

    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// A webhook as asked for, before validation.
#[derive(Debug, Clone, Default)]
pub struct WebhookDraft {
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub description: Option<String>,
}

/// Checks every field of `draft`, one fault per field at fault (`BAD_USER_INPUT` with the field).
async fn validate(
    config: &Config,
    draft: &WebhookDraft,
) -> Result<webhooks::ActiveModel, Vec<AppError>> {
    let mut faults: Vec<AppError> = Vec::new();
    let mut fault = |field: &str, message: String| faults.push(AppError::bad_input(field, message));
    let url = draft.url.trim();
    if url.is_empty() {
        fault("url", "url is required".into());
    } else if url.len() > MAX_URL_BYTES {
        fault("url", format!("url must be at most {MAX_URL_BYTES} bytes"));
    } else if let Err(message) = address::check_url(config, url).await {
        fault("url", message);
    }
    let mut events: Vec<&'static str> = Vec::new();
    if draft.events.is_empty() {
        fault("events", "name at least one event".into());
    } else if draft.events.len() > Event::ALL.len() {
        fault(
            "events",
            format!("name at most the {} events there are", Event::ALL.len()),
        );
    }
    for (index, name) in draft.events.iter().take(Event::ALL.len()).enumerate() {
        let field = format!("events[{index}]");
        match name.trim().parse::<Event>() {
            Err(_) => fault(
                &field,
                format!(
                    "unknown event {:?}; events are {}",
                    name.chars().take(40).collect::<String>(),
                    Event::ALL.map(Event::name).join(", ")
                ),
            ),
            Ok(event) if events.contains(&event.name()) => {
                fault(&field, format!("the event {} is named twice", event.name()));
            }
            Ok(event) => events.push(event.name()),
        }
    }
    // Not trimmed: the secret is exactly the key the receiver verifies with.
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&draft.secret.len()) {
        fault(
            "secret",
            format!("the secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"),
        );
    }
    let description = draft
        .description
        .as_deref()
        .map(str::trim)
        .filter(|description| !description.is_empty());
    if description.is_some_and(|description| description.len() > MAX_DESCRIPTION_BYTES) {
        fault(
            "description",
            format!("description must be at most {MAX_DESCRIPTION_BYTES} bytes"),
        );
    }
    if !faults.is_empty() {
        return Err(faults);
    }
    Ok(webhooks::ActiveModel {
        id: Set(Uuid::new_v4()),
        url: Set(url.to_owned()),
        events: Set(json!(events)),
        secret: Set(draft.secret.clone()),
        description: Set(description.map(str::to_owned)),
        created_at: Set(Utc::now().fixed_offset()),
    })
}

/// Saves a new webhook (audited); from now on every event it names is delivered to it.
pub async fn create(
    state: &SharedState,
    actor: &Actor,
    draft: &WebhookDraft,
) -> Result<webhooks::Model, Vec<AppError>> {
    let row = validate(&state.config, draft).await?;
    let saved = async {
        let txn = state.db.begin().await?;
        let webhook = webhooks::Entity::insert(row)
            .exec_with_returning(&txn)
            .await?;
        audit::record(
            &txn,
            actor,
            "webhook.create",
            None,
            Outcome::Success,
            described(&webhook),
        )
        .await;
        txn.commit().await?;
        AppResult::Ok(webhook)
    };
    saved.await.map_err(|err| vec![err])
}

/// Every webhook, oldest first.
pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<webhooks::Model>> {
    Ok(webhooks::Entity::find()
        .order_by_asc(webhooks::Column::CreatedAt)
        .order_by_asc(webhooks::Column::Id)
        .all(db)
        .await?)
}

/// Deletes a webhook and its deliveries (audited): nothing more is sent to it (an attempt
/// already under way finishes).
pub async fn delete(state: &SharedState, actor: &Actor, id: Uuid) -> AppResult<()> {
    let txn = state.db.begin().await?;
    let webhook = webhooks::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found("no such webhook"))?;
    webhooks::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
        actor,
        "webhook.delete",
        None,
        Outcome::Success,
        described(&webhook),
    )
    .await;
    txn.commit().await?;
    Ok(())
}

/// A webhook in the audit trail (never its secret).
fn described(webhook: &webhooks::Model) -> Value {
    json!({ "webhookId": webhook.id, "url": webhook.url, "events": webhook.events })
}

/// The webhook's latest `first` deliveries, newest first.
pub async fn deliveries(
    db: &impl ConnectionTrait,
    webhook_id: Uuid,
    first: u64,
) -> AppResult<Vec<webhook_deliveries::Model>> {
    Ok(webhook_deliveries::Entity::find()
        .filter(webhook_deliveries::Column::WebhookId.eq(webhook_id))
        .order_by_desc(webhook_deliveries::Column::CreatedAt)
        .order_by_desc(webhook_deliveries::Column::Id)
        .limit(first.min(MAX_DELIVERIES_PAGE))
        .all(db)
        .await?)
}

/// The event names a stored webhook subscribes to.
pub fn events_of(webhook: &webhooks::Model) -> Vec<String> {
    serde_json::from_value(webhook.events.clone()).unwrap_or_default()
}

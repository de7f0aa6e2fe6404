//! The audit trail (`public.audit_events`): who did what to which tenant, with what outcome.

use entity::public::{audit_events, tenants};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{error::AppError, webhooks::outbox};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Who acted, as the audit trail records it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: &'static str,
    pub id: Option<String>,
    pub client_addr: Option<String>,
}

impl Actor {
    /// The operator at a command line, or the server acting on its own.
    pub fn system() -> Self {
        Actor {
            kind: "SYSTEM",
            id: None,
            client_addr: None,
        }
    }
}

/// Writes one event, and queues the webhook event the action announces (if any) with the same
/// connection, so inside the change's transaction both commit with it or not at all. A failure
/// to audit is logged, not raised: the action itself already happened and must be reported
/// truthfully to the caller.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &str,
    tenant_id: Option<Uuid>,
    outcome: Outcome,
    detail: Value,
) {
    let row = audit_events::ActiveModel {
        actor_kind: Set(actor.kind.to_owned()),
        actor_id: Set(actor.id.clone()),
        action: Set(action.to_owned()),
        tenant_id: Set(tenant_id),
        outcome: Set(match outcome {
            Outcome::Success => "SUCCESS",
            Outcome::Failure => "FAILURE",
        }
        .to_owned()),
        detail: Set(Some(detail.clone())),
        client_addr: Set(actor.client_addr.clone()),
        ..Default::default()
    };
    if let Err(err) = audit_events::Entity::insert(row)
        .exec_without_returning(db)
        .await
    {
        tracing::error!(error = %err, action, ?tenant_id, "could not write an audit event");
        return;
    }
    if let Err(err) = outbox::enqueue_for_action(db, action, outcome, tenant_id, &detail).await {
        tracing::error!(error = %err, action, ?tenant_id, "could not queue a webhook event");
    }
}

/// A successful action on `tenant`; the detail also names the tenant, its domain, schema and
/// status (as its webhook event does).
pub async fn tenant_success(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &str,
    tenant: &tenants::Model,
    mut detail: Value,
) {
    tracing::info!(action, tenant_id = %tenant.id, schema = %tenant.schema_name, "tenant action done");
    if let (Some(detail), Value::Object(described)) =
        (detail.as_object_mut(), outbox::tenant_data(tenant))
    {
        detail.extend(described);
    }
    record(db, actor, action, Some(tenant.id), Outcome::Success, detail).await;
}

/// A failed action, with the error's code and its client-facing message.
pub async fn failure(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &str,
    tenant_id: Option<Uuid>,
    err: &AppError,
) {
    tracing::warn!(action, ?tenant_id, code = err.code(), error = %err, "tenant action failed");
    let detail = json!({ "code": err.code(), "error": err.to_string() });
    record(db, actor, action, tenant_id, Outcome::Failure, detail).await;
}

//! The audit trail (`public.audit_events`): who did what to which tenant, with what outcome.

use entity::public::{audit_events, tenants};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, EntityTrait, QueryTrait, sea_query::PostgresQueryBuilder,
};
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
/// connection, so inside the change's transaction both commit with it or not at all; one round
/// trip ([`record_script`]). A failure to audit is logged, not raised: the action itself already
/// happened and must be reported truthfully to the caller.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &str,
    tenant_id: Option<Uuid>,
    outcome: Outcome,
    detail: Value,
) {
    let script = record_script(actor, action, tenant_id, outcome, detail);
    if let Err(err) = db.execute_unprepared(&script).await {
        tracing::error!(error = %err, action, ?tenant_id, "could not write an audit event");
    }
}

/// The statements of [`record`], values inlined: the audit row, then the webhook event's
/// deliveries. Also sent as part of a longer script (a fleet migration's one round trip).
pub fn record_script(
    actor: &Actor,
    action: &str,
    tenant_id: Option<Uuid>,
    outcome: Outcome,
    detail: Value,
) -> String {
    let queued = outbox::enqueue_script_for_action(action, outcome, tenant_id, &detail);
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
        detail: Set(Some(detail)),
        client_addr: Set(actor.client_addr.clone()),
        ..Default::default()
    };
    let insert = audit_events::Entity::insert(row)
        .into_query()
        .to_string(PostgresQueryBuilder);
    match queued {
        Some(queued) => format!("{insert};\n{queued}"),
        None => insert,
    }
}

/// A successful action on `tenant`; the detail also names the tenant, its domain, schema and
/// status (as its webhook event does).
pub async fn tenant_success(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &str,
    tenant: &tenants::Model,
    detail: Value,
) {
    tracing::info!(action, tenant_id = %tenant.id, schema = %tenant.schema_name, "tenant action done");
    let detail = naming_the_tenant(tenant, detail);
    record(db, actor, action, Some(tenant.id), Outcome::Success, detail).await;
}

/// The statements of [`tenant_success`], values inlined ([`record_script`]).
pub fn tenant_success_script(
    actor: &Actor,
    action: &str,
    tenant: &tenants::Model,
    detail: Value,
) -> String {
    let detail = naming_the_tenant(tenant, detail);
    record_script(actor, action, Some(tenant.id), Outcome::Success, detail)
}

fn naming_the_tenant(tenant: &tenants::Model, mut detail: Value) -> Value {
    if let (Some(detail), Value::Object(described)) =
        (detail.as_object_mut(), outbox::tenant_data(tenant))
    {
        detail.extend(described);
    }
    detail
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

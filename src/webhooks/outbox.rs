//! The outbox: a delivery row per webhook subscribed to an event, written in the transaction
//! of the change the event announces. PostgreSQL announces new rows on [`WEBHOOKS_CHANNEL`] when
//! (and only if) that transaction commits, which wakes the senders of every server.

use entity::public::tenants;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Event;
use crate::audit::Outcome;

/// The channel on which new deliveries are announced (the payload is empty).
pub const WEBHOOKS_CHANNEL: &str = "tenantgraph_webhooks";

/// Queues `event` with `data` for every webhook subscribed to it, as part of the transaction
/// `conn` runs in. Returns how many deliveries were queued.
pub async fn enqueue(conn: &impl ConnectionTrait, event: Event, data: Value) -> Result<u64, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH queued AS ( \
                 INSERT INTO public.webhook_deliveries (id, webhook_id, event, data) \
                 SELECT gen_random_uuid(), id, $1, $2 FROM public.webhooks \
                  WHERE events @> jsonb_build_array($1::text) \
                 RETURNING 1) \
             SELECT count(*) AS queued, \
                    CASE WHEN count(*) > 0 THEN pg_notify($3, '') END AS announced \
               FROM queued",
            [event.name().into(), data.into(), WEBHOOKS_CHANNEL.into()],
        ))
        .await?;
    Ok(row
        .and_then(|row| row.try_get::<i64>("", "queued").ok())
        .unwrap_or(0) as u64)
}

/// The event an audited action announces, if any.
pub fn event_of_action(action: &str, outcome: Outcome, tenant_id: Option<Uuid>) -> Option<Event> {
    match (action, outcome) {
        ("tenant.create" | "tenant.restore", Outcome::Success) => Some(Event::TenantCreated),
        ("tenant.update" | "tenant.reactivate", Outcome::Success) => Some(Event::TenantUpdated),
        ("tenant.deactivate", Outcome::Success) => Some(Event::TenantDeactivated),
        ("tenant.delete", Outcome::Success) => Some(Event::TenantDeleted),
        ("tenant.migrate", Outcome::Success) => Some(Event::TenantMigrated),
        ("batch.finished", Outcome::Success) => Some(Event::BatchFinished),
        // Only a failure that a tenant lived through: refused input made no tenant.
        ("tenant.create" | "tenant.migrate" | "tenant.provision_schema", Outcome::Failure)
            if tenant_id.is_some() =>
        {
            Some(Event::TenantFailed)
        }
        _ => None,
    }
}

/// Queues the event an audited action announces (if any), with the audit detail as its data.
pub async fn enqueue_for_action(
    conn: &impl ConnectionTrait,
    action: &str,
    outcome: Outcome,
    tenant_id: Option<Uuid>,
    detail: &Value,
) -> Result<(), DbErr> {
    let Some(event) = event_of_action(action, outcome, tenant_id) else {
        return Ok(());
    };
    let mut data = detail.clone();
    if let Some(tenant_id) = tenant_id {
        data["tenantId"] = json!(tenant_id);
    }
    if outcome == Outcome::Failure {
        data["operation"] = json!(action);
    }
    enqueue(conn, event, data).await.map(drop)
}

/// What every tenant event says about its tenant.
pub fn tenant_data(tenant: &tenants::Model) -> Value {
    json!({
        "tenantId": tenant.id,
        "tenantName": tenant.tenant_name,
        "domain": tenant.domain,
        "schemaName": tenant.schema_name,
        "status": tenant.status.as_db(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_input_announces_no_failure() {
        assert_eq!(
            event_of_action("tenant.create", Outcome::Failure, None),
            None
        );
        assert_eq!(
            event_of_action("tenant.create", Outcome::Failure, Some(Uuid::nil())),
            Some(Event::TenantFailed)
        );
        assert_eq!(
            event_of_action("tenant.rotate_api_key", Outcome::Success, Some(Uuid::nil())),
            None
        );
    }
}

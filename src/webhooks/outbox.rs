//! The outbox: a delivery row per webhook subscribed to an event, written in the transaction
//! of the change the event announces. PostgreSQL announces new rows on [`WEBHOOKS_CHANNEL`] when
//! (and only if) that transaction commits, which wakes the senders of every server.

use entity::public::tenants;
use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{self, PostgresQueryBuilder, QueryBuilder},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Event;
use crate::audit::Outcome;

/// The channel on which new deliveries are announced (the payload is empty).
pub const WEBHOOKS_CHANNEL: &str = "tenantgraph_webhooks";

/// Queues `event` with `data` for every webhook subscribed to it, as part of the transaction
/// `conn` runs in.
pub async fn enqueue(conn: &impl ConnectionTrait, event: Event, data: Value) -> Result<(), DbErr> {
    conn.execute_unprepared(&enqueue_script(event, &data))
        .await
        .map(drop)
}

/// The statement of [`enqueue`], its values inlined, to run on its own or as part of a longer
/// script (an audit row with its event, a fleet migration's one round trip).
pub fn enqueue_script(event: Event, data: &Value) -> String {
    let literal = |value: sea_query::Value| PostgresQueryBuilder.value_to_string(&value);
    format!(
        "WITH queued AS ( \
             INSERT INTO public.webhook_deliveries (id, webhook_id, event, data) \
             SELECT gen_random_uuid(), id, {event}, {data}::jsonb FROM public.webhooks \
              WHERE events @> jsonb_build_array({event}::text) \
             RETURNING 1) \
         SELECT CASE WHEN count(*) > 0 THEN pg_notify({channel}, '') END FROM queued",
        event = literal(event.name().into()),
        data = literal(data.to_string().into()),
        channel = literal(WEBHOOKS_CHANNEL.into()),
    )
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

/// The statement that queues the event an audited action announces, with the audit detail as
/// its data; `None` when the action announces none.
pub fn enqueue_script_for_action(
    action: &str,
    outcome: Outcome,
    tenant_id: Option<Uuid>,
    detail: &Value,
) -> Option<String> {
    let event = event_of_action(action, outcome, tenant_id)?;
    let mut data = detail.clone();
    if let Some(tenant_id) = tenant_id {
        data["tenantId"] = json!(tenant_id);
    }
    if outcome == Outcome::Failure {
        data["operation"] = json!(action);
    }
    Some(enqueue_script(event, &data))
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

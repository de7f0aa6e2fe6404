use sea_orm_migration::prelude::*;

/// Webhooks (operators' subscriptions to tenant life-cycle events) and their outbox of
/// deliveries. A delivery row is written in the transaction of the change it announces and is
/// sent (and retried) by whichever server claims it first.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
                CREATE TABLE webhooks (
                    id uuid PRIMARY KEY,
                    url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
                    events jsonb NOT NULL
                        CHECK (jsonb_typeof(events) = 'array' AND jsonb_array_length(events) >= 1),
                    secret text NOT NULL CHECK (length(secret) BETWEEN 16 AND 256),
                    description text CHECK (length(description) <= 1000),
                    created_at timestamptz NOT NULL DEFAULT now()
                );
                -- Finding the webhooks of an event as a change is recorded.
                CREATE INDEX webhooks_events_idx ON webhooks USING gin (events jsonb_ops);

                CREATE TABLE webhook_deliveries (
                    id uuid PRIMARY KEY,
                    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
                    event text NOT NULL,
                    data jsonb NOT NULL,
                    status text NOT NULL DEFAULT 'PENDING'
                        CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
                    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                    -- When a PENDING delivery is due; while an attempt runs, when its claim
                    -- lapses (a server that stopped mid-send leaves it to be tried again).
                    next_attempt_at timestamptz NOT NULL DEFAULT now(),
                    last_status_code integer,
                    last_error text,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    delivered_at timestamptz
                );
                CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
                    WHERE status = 'PENDING';
                CREATE INDEX webhook_deliveries_webhook_idx
                    ON webhook_deliveries (webhook_id, created_at DESC);
                "#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE webhook_deliveries; DROP TABLE webhooks;")
            .await?;
        Ok(())
    }
}

use sea_orm_migration::prelude::*;

/// Durable state of batch provisioning and fleet migrations: the batch, one job per tenant, and
/// the step events a progress subscriber replays.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
                CREATE TABLE provisioning_batches (
                    id uuid PRIMARY KEY,
                    kind text NOT NULL CHECK (kind IN ('PROVISION', 'MIGRATE')),
                    status text NOT NULL CHECK (status IN
                        ('PENDING', 'RUNNING', 'SUCCEEDED', 'PARTIALLY_FAILED', 'FAILED', 'ROLLED_BACK')),
                    options jsonb NOT NULL,
                    target_revision text,
                    total integer NOT NULL,
                    successful integer NOT NULL DEFAULT 0,
                    failed integer NOT NULL DEFAULT 0,
                    created_by text,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    started_at timestamptz,
                    finished_at timestamptz
                );
                -- Start-up looks for batches a dead server left unfinished.
                CREATE INDEX idx_provisioning_batches_unfinished
                    ON provisioning_batches (created_at) WHERE finished_at IS NULL;

                CREATE TABLE provisioning_jobs (
                    id uuid PRIMARY KEY,
                    batch_id uuid NOT NULL REFERENCES provisioning_batches (id) ON DELETE CASCADE,
                    position integer NOT NULL,
                    tenant_name text NOT NULL,
                    domain text NOT NULL,
                    schema_name text,
                    tenant_id uuid,
                    status text NOT NULL CHECK (status IN
                        ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK')),
                    step text,
                    attempts integer NOT NULL DEFAULT 0,
                    error_code text,
                    error_message text,
                    started_at timestamptz,
                    finished_at timestamptz,
                    duration_ms bigint,
                    UNIQUE (batch_id, position)
                );

                CREATE TABLE provisioning_events (
                    batch_id uuid NOT NULL REFERENCES provisioning_batches (id) ON DELETE CASCADE,
                    seq integer NOT NULL,
                    tenant_name text,
                    schema_name text,
                    step text NOT NULL,
                    status text NOT NULL,
                    message text,
                    completed integer NOT NULL,
                    total integer NOT NULL,
                    at timestamptz NOT NULL,
                    PRIMARY KEY (batch_id, seq)
                );
                "#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE provisioning_events, provisioning_jobs, provisioning_batches",
            )
            .await?;
        Ok(())
    }
}

use sea_orm_migration::prelude::*;

/// Templates per tenant type (default settings and extra roles a new tenant starts with), and
/// the roles a registered tenant waits to have seeded, kept with it like its first administrator
/// so that provisioning later (or resuming a batch) seeds what was resolved when it was created.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
                CREATE TABLE tenant_templates (
                    id uuid PRIMARY KEY,
                    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
                    tenant_type text,
                    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
                    roles jsonb NOT NULL DEFAULT '[]'::jsonb,
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                );
                -- Names compare without case; at most one template a tenant type.
                CREATE UNIQUE INDEX tenant_templates_name_key ON tenant_templates (lower(name));
                CREATE UNIQUE INDEX tenant_templates_tenant_type_key ON tenant_templates (tenant_type);
                ALTER TABLE tenants ADD COLUMN pending_roles jsonb;
                "#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE tenants DROP COLUMN pending_roles; DROP TABLE tenant_templates;",
            )
            .await?;
        Ok(())
    }
}

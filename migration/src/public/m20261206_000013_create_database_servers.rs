use sea_orm_migration::prelude::*;

/// The PostgreSQL servers tenants may be placed on besides the control database (the one that
/// holds this registry, always the server named `control`), and each tenant's placement.
///
/// A tenant whose `server_name` is NULL lives on the control database, so a deployment that
/// never adds a server is unchanged.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
                CREATE TABLE database_servers (
                    name text PRIMARY KEY
                        CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$' AND name <> 'control'),
                    -- Holds the password: never logged, never answered over GraphQL.
                    url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
                    state text NOT NULL DEFAULT 'ACTIVE'
                        CHECK (state IN ('ACTIVE', 'DRAINING', 'DOWN')),
                    -- How many tenants placement may put there; NULL is no limit.
                    capacity integer CHECK (capacity >= 0),
                    created_at timestamptz NOT NULL DEFAULT now(),
                    updated_at timestamptz NOT NULL DEFAULT now()
                );
                ALTER TABLE tenants
                    ADD COLUMN server_name text REFERENCES database_servers (name);
                -- Counting each server's tenants for placement, and listing them per server.
                CREATE INDEX tenants_server_name_idx ON tenants (server_name)
                    WHERE deleted_at IS NULL;
                "#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX tenants_server_name_idx; \
                 ALTER TABLE tenants DROP COLUMN server_name; \
                 DROP TABLE database_servers;",
            )
            .await?;
        Ok(())
    }
}

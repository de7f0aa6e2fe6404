use sea_orm_migration::prelude::*;

/// What a batch job needs to be run again by any server after a restart: its input (a new
/// tenant's checked draft with the administrator's password already hashed, or a migrated
/// tenant's starting revision) and whether it was interrupted and resumed.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"
                ALTER TABLE provisioning_jobs
                    ADD COLUMN input jsonb,
                    ADD COLUMN resumed boolean NOT NULL DEFAULT false;
                "#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE provisioning_jobs DROP COLUMN input, DROP COLUMN resumed;",
            )
            .await?;
        Ok(())
    }
}

//! `provisioningBatches` lists batches newest first (optionally of one status): an index in that
//! order, so a page is read from its top however many batches were ever run.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX idx_provisioning_batches_newest
                   ON public.provisioning_batches (created_at DESC, id DESC);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX public.idx_provisioning_batches_newest;")
            .await?;
        Ok(())
    }
}

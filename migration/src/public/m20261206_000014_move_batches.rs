//! A batch may also move a tenant to another database server (`moveTenant`): `kind` allows
//! `MOVE`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE public.provisioning_batches
                   DROP CONSTRAINT provisioning_batches_kind_check,
                   ADD CONSTRAINT provisioning_batches_kind_check
                     CHECK (kind IN ('PROVISION', 'MIGRATE', 'UPDATE', 'MOVE'));",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Move batches have no place in the older schema; their jobs and events go with them.
        manager
            .get_connection()
            .execute_unprepared(
                "DELETE FROM public.provisioning_batches WHERE kind = 'MOVE';
                 ALTER TABLE public.provisioning_batches
                   DROP CONSTRAINT provisioning_batches_kind_check,
                   ADD CONSTRAINT provisioning_batches_kind_check
                     CHECK (kind IN ('PROVISION', 'MIGRATE', 'UPDATE'));",
            )
            .await?;
        Ok(())
    }
}

//! API keys get a scope: the permission codes a key may use, stored next to its hash.
//!
//! Keys made before this migration acted with every permission of the tenant's `admin` role;
//! they are narrowed to the default scope of new keys (every permission but `users:write`),
//! so that no key of an upgraded deployment can make users or give roles until an operator
//! rotates it with the permissions it needs.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE public.tenants
                   ADD COLUMN api_key_permissions jsonb NOT NULL DEFAULT '[]'::jsonb
                   CONSTRAINT tenants_api_key_permissions_check
                     CHECK (jsonb_typeof(api_key_permissions) = 'array');
                 UPDATE public.tenants SET api_key_permissions =
                   '[\"users:read\", \"people:read\", \"people:write\", \"roles:read\",
                     \"settings:read\", \"settings:write\"]'::jsonb
                  WHERE api_key_hash IS NOT NULL;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE public.tenants DROP COLUMN api_key_permissions")
            .await?;
        Ok(())
    }
}

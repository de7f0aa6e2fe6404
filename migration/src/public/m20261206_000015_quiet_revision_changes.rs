//! A tenant's migration bookkeeping (`current_revision`, `migrations_applied`) is nothing any
//! server caches: changing it alone no longer notifies every server. A fleet migration changes
//! it for every tenant, and a transaction that notifies takes PostgreSQL's one notification
//! queue lock through its commit, so those commits (each with its WAL flush) ran one at a
//! time. A change that parks or revives a tenant still notifies, through its `status`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The trigger of `m20261129_000005_create_sessions`, ignoring the columns in `ignored`.
fn access_changed_trigger(ignored: &str) -> String {
    format!(
        "DROP TRIGGER tenants_access_changed ON public.tenants;
         CREATE TRIGGER tenants_access_changed AFTER UPDATE ON public.tenants
             FOR EACH ROW
             WHEN ((to_jsonb(OLD) {ignored}) IS DISTINCT FROM (to_jsonb(NEW) {ignored}))
             EXECUTE FUNCTION public.tenantgraph_notify_row('tenant');"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&access_changed_trigger(
                "- 'last_activity_at' - 'updated_at' - 'current_revision' - 'migrations_applied'",
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&access_changed_trigger(
                "- 'last_activity_at' - 'updated_at'",
            ))
            .await?;
        Ok(())
    }
}

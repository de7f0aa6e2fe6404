//! What the registry and the batch tables hold is checked by the database too: a schema name
//! is a valid, unreserved identifier (as `SchemaName` accepts it), and every step and step
//! status is one the server knows. So a row written by hand, or by a faulty server, is refused
//! instead of surprising every request that reads it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const STEPS: &str = "'VALIDATE', 'CREATE_SCHEMA', 'MIGRATE', 'SEED', 'REGISTER', 'API_KEY', \
                     'VERIFY', 'ROLLBACK', 'DONE'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "ALTER TABLE public.tenants ADD CONSTRAINT tenants_schema_name_check CHECK (
                   schema_name ~ '^[a-z_][a-z0-9_]*$' COLLATE \"C\"
                   AND octet_length(schema_name) <= 63
                   AND schema_name NOT IN ('public', 'information_schema')
                   AND left(schema_name, 3) <> 'pg_');
                 ALTER TABLE public.provisioning_jobs ADD CONSTRAINT provisioning_jobs_step_check
                   CHECK (step IN ({STEPS}));
                 ALTER TABLE public.provisioning_events
                   ADD CONSTRAINT provisioning_events_step_check CHECK (step IN ({STEPS})),
                   ADD CONSTRAINT provisioning_events_status_check
                     CHECK (status IN ('STARTED', 'SUCCEEDED', 'FAILED', 'RETRYING'));"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE public.tenants DROP CONSTRAINT tenants_schema_name_check;
                 ALTER TABLE public.provisioning_jobs DROP CONSTRAINT provisioning_jobs_step_check;
                 ALTER TABLE public.provisioning_events
                   DROP CONSTRAINT provisioning_events_step_check,
                   DROP CONSTRAINT provisioning_events_status_check;",
            )
            .await?;
        Ok(())
    }
}

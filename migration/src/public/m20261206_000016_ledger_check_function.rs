//! A fleet migration's one round trip per tenant (`tenancy::rendered`) first checks that the
//! schema's ledger holds what the registry says is applied. As an anonymous `DO` block that
//! check was compiled again for every tenant; as a function it is compiled once per connection.
//! The ledger is named through the schema given, never through the search path.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE FUNCTION public.tenantgraph_check_ledger(schema_name text, expected text[])
                 RETURNS void LANGUAGE plpgsql AS $$
                 DECLARE
                     applied text[];
                 BEGIN
                     EXECUTE format(
                         'SELECT coalesce(array_agg(version::text ORDER BY version), ''{}'') FROM %I.seaql_migrations',
                         schema_name)
                     INTO applied;
                     IF applied IS DISTINCT FROM expected THEN
                         RAISE EXCEPTION USING ERRCODE = 'TGL01',
                             MESSAGE = 'the migration ledger is not at the registry''s revision';
                     END IF;
                 END $$;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP FUNCTION public.tenantgraph_check_ledger(text, text[]);")
            .await?;
        Ok(())
    }
}

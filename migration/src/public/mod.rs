use sea_orm_migration::prelude::*;

mod m20260101_000001_create_tenants;
mod m20260101_000002_create_platform_users;
mod m20260101_000003_create_audit_events;
mod m20260101_000004_create_provisioning_batches;
mod m20261129_000005_create_sessions;
mod m20261129_000006_scope_api_keys;
mod m20261129_000007_check_states_and_schema_names;
mod m20261129_000008_resumable_batches;
mod m20261129_000009_create_tenant_templates;
mod m20261206_000010_create_webhooks;
mod m20261206_000011_update_batches;
mod m20261206_000012_index_batches_by_creation;
mod m20261206_000013_create_database_servers;
mod m20261206_000014_move_batches;
mod m20261206_000015_quiet_revision_changes;
mod m20261206_000016_ledger_check_function;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20260101_000001_create_tenants::Migration),
        Box::new(m20260101_000002_create_platform_users::Migration),
        Box::new(m20260101_000003_create_audit_events::Migration),
        Box::new(m20260101_000004_create_provisioning_batches::Migration),
        Box::new(m20261129_000005_create_sessions::Migration),
        Box::new(m20261129_000006_scope_api_keys::Migration),
        Box::new(m20261129_000007_check_states_and_schema_names::Migration),
        Box::new(m20261129_000008_resumable_batches::Migration),
        Box::new(m20261129_000009_create_tenant_templates::Migration),
        Box::new(m20261206_000010_create_webhooks::Migration),
        Box::new(m20261206_000011_update_batches::Migration),
        Box::new(m20261206_000012_index_batches_by_creation::Migration),
        Box::new(m20261206_000013_create_database_servers::Migration),
        Box::new(m20261206_000014_move_batches::Migration),
        Box::new(m20261206_000015_quiet_revision_changes::Migration),
        Box::new(m20261206_000016_ledger_check_function::Migration),
    ]
}

//! Two migration sets: [`PublicMigrator`] for the shared registry in the `public` schema and
//! [`TenantMigrator`] for the tables of one tenant schema.
//!
//! The tenant set never names a schema: the caller sets `search_path` to the tenant schema
//! (transaction-locally) and passes that transaction, so the tables and the `seaql_migrations`
//! ledger all land in the tenant schema.
//!
//! An application built on tenantgraph appends its own tenant migrations to the built-in ones
//! ([`register_app_migrations`]); they share the schema's one ledger.

pub use sea_orm_migration;

use sea_orm_migration::prelude::*;

mod app;
mod columns;
mod public;
mod tenant;

pub use app::{
    AppMigrations, PermissionSeed, RegistrationError, register_app_migrations, seed_permissions,
    unseed_permissions,
};

/// Tables every migrated `public` schema has.
pub const PUBLIC_TABLES: &[&str] = &[
    "tenants",
    "platform_users",
    "audit_events",
    "sessions",
    "refresh_tokens",
    "provisioning_batches",
    "provisioning_jobs",
    "provisioning_events",
    "tenant_templates",
    "webhooks",
    "webhook_deliveries",
    "database_servers",
    "seaql_migrations",
];

/// Tables every fully provisioned tenant schema of the built-in server has; [`tenant_tables`]
/// adds an application's.
pub const TENANT_TABLES: &[&str] = &[
    "tenant_settings",
    "user_statuses",
    "roles",
    "users",
    "user_roles",
    "permissions",
    "role_permissions",
    "person",
    "seaql_migrations",
];

/// The registry migrations; run with the default `search_path`.
pub struct PublicMigrator;

impl MigratorTrait for PublicMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        public::migrations()
    }
}

/// The per-tenant migrations; run inside a transaction whose `search_path` is the tenant schema.
/// The built-in ones, then the application's (see [`register_app_migrations`]).
pub struct TenantMigrator;

impl MigratorTrait for TenantMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = tenant::migrations();
        all.extend(app::registered().migrations());
        all
    }
}

/// Tables every fully provisioned tenant schema has: [`TENANT_TABLES`] and the application's.
pub fn tenant_tables() -> Vec<&'static str> {
    let mut tables = TENANT_TABLES.to_vec();
    tables.extend(app::registered().tables());
    tables
}

/// Names of the tenant migrations, oldest first; the last one is the head revision.
pub fn tenant_migration_names() -> Vec<String> {
    TenantMigrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

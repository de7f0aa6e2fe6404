//! The parish application: its tenant migration, entity, permissions and GraphQL objects,
//! assembled with tenantgraph's builder.

pub mod donation;
mod graphql;
mod migration;

use tenantgraph::app::{AppPermission, TenantGraph};

pub use graphql::{ParishMutation, ParishQuery};

/// Listing donations; every seeded role may.
pub const DONATIONS_READ: AppPermission = AppPermission {
    code: "donations:read",
    description: "List and view donations",
    roles: &["admin", "member", "viewer"],
};

/// Recording donations: admins and members, not viewers.
pub const DONATIONS_WRITE: AppPermission = AppPermission {
    code: "donations:write",
    description: "Record donations",
    roles: &["admin", "member"],
};

/// The permissions the parish adds, seeded by its migration.
pub const PERMISSIONS: &[AppPermission] = &[DONATIONS_READ, DONATIONS_WRITE];

/// The parish server: tenantgraph with donations.
pub fn tenantgraph() -> anyhow::Result<TenantGraph> {
    TenantGraph::builder()
        .tenant_migrations(migration::migrations, migration::TABLES)
        .permissions(PERMISSIONS)
        .query::<ParishQuery>()
        .mutation::<ParishMutation>()
        .build()
}

//! Per-tenant tables. No `schema_name`: they resolve through the transaction's
//! `search_path`, which pins them to the caller's tenant schema.

pub mod prelude;

pub mod permissions;
pub mod person;
pub mod role_permissions;
pub mod roles;
pub mod tenant_settings;
pub mod user_roles;
pub mod user_statuses;
pub mod users;

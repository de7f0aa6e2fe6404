//! Registry tables in the `public` schema. Every entity sets `schema_name = "public"`, so
//! queries stay on the registry even inside a transaction pinned to a tenant schema.

pub mod prelude;

pub mod audit_events;
pub mod database_servers;
pub mod platform_users;
pub mod provisioning_batches;
pub mod provisioning_events;
pub mod provisioning_jobs;
pub mod refresh_tokens;
pub mod sessions;
pub mod tenant_templates;
pub mod tenants;
pub mod webhook_deliveries;
pub mod webhooks;

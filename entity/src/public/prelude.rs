pub use super::audit_events::Entity as AuditEvents;
pub use super::platform_users::Entity as PlatformUsers;
pub use super::provisioning_batches::Entity as ProvisioningBatches;
pub use super::provisioning_events::Entity as ProvisioningEvents;
pub use super::provisioning_jobs::Entity as ProvisioningJobs;
pub use super::refresh_tokens::Entity as RefreshTokens;
pub use super::sessions::Entity as Sessions;
pub use super::tenants::Entity as Tenants;

pub use super::audit_events::Entity as AuditEvents;
pub use super::platform_users::Entity as PlatformUsers;
pub use super::tenants::Entity as Tenants;

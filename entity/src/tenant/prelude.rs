pub use super::permissions::Entity as Permissions;
pub use super::person::Entity as Person;
pub use super::role_permissions::Entity as RolePermissions;
pub use super::roles::Entity as Roles;
pub use super::tenant_settings::Entity as TenantSettings;
pub use super::user_roles::Entity as UserRoles;
pub use super::user_statuses::Entity as UserStatuses;
pub use super::users::Entity as Users;

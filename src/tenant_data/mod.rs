//! Tenant data: users, people, roles and settings of the caller's tenant. Every function takes
//! the request's [`TenantContext`](crate::auth::tenant::TenantContext) and reaches the data only
//! through the transaction it pins to the tenant's schema; none knows about GraphQL.

pub mod people;
pub mod roles;
pub mod settings;
pub mod users;

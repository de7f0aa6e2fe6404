//! The tenant registry over GraphQL.

mod types;

pub use types::{Tenant, TenantStatus};

//! The tenant registry and life cycle over GraphQL (platform operators only).

mod drift;
mod inputs;
mod mutation;
mod query;
mod templates;
mod types;

pub use drift::DriftQuery;
pub use inputs::{
    CreateTenantInput, TenantFilter, TenantLimitsInput, TenantSettingsInput, UpdateTenantInput,
};
pub use mutation::TenantMutation;
pub use query::TenantQuery;
pub use templates::{TemplateMutation, TemplateQuery};
pub use types::Tenant;

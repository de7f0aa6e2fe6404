//! The caller's tenant over GraphQL: users, people, roles, settings. Every resolver first asks
//! the request for its tenant with the permission it needs; nested look-ups (a user's roles, a
//! person's creator) are batched per operation with DataLoaders.

mod inputs;
mod loaders;
mod mutation;
mod query;
mod types;

pub use loaders::TenantBatch;
pub(crate) use loaders::{TenantDataLoader, batch_error, insert_loaders, loaders};
pub use mutation::TenantDataMutation;
pub use query::TenantDataQuery;
pub use types::{Person, PersonConnection, Role, TenantSettingsView, User};

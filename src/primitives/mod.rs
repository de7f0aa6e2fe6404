//! The shared primitives every layer builds on: database identifiers, credential rules, advisory
//! lock keys, the metrics registry and which hosts are public. Nothing here names a module of ours above
//! [`crate::error`]: the services, the API and the database layer all import from here, never
//! the other way round.

pub mod api_keys;
pub mod credentials;
pub mod debounce;
pub mod hosts;
pub mod locks;
pub mod metrics;
pub mod permissions;
pub mod refresh_tokens;
pub mod schema_name;

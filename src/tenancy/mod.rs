//! The tenant life cycle: naming and validation, provisioning, per-schema migrations.

pub mod naming;

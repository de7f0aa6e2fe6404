//! tenantgraph: a GraphQL API server for multi-tenant SaaS back-ends, one PostgreSQL schema per
//! tenant.
//!
//! - [`primitives`] (schema names, credential rules, lock keys, metrics), [`error`] and [`config`]
//!   are the ground everything else stands on; they name nothing above them.
//! - [`config`] reads the environment; [`startup`] wires everything into an [`startup::Application`].
//! - [`db`] owns the pool, the embedded PostgreSQL default and the public migrations.
//! - [`auth`] decides who calls; [`tenancy`] owns the tenant life cycle; [`tenant_data`] is a
//!   tenant's own users, people, roles and settings, reached only through its pinned transaction.
//! - [`webhooks`] tells operators' receivers of tenant life-cycle events, from an outbox.
//! - [`graphql`] is the API (thin resolvers over the services); [`http`] serves it.

pub mod app;
pub mod audit;
pub mod auth;
pub mod batch;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod http;
pub mod primitives;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tenancy;
pub mod tenant_data;
pub mod webhooks;

pub use async_graphql;
pub use entity;
pub use migration::sea_orm_migration;
pub use sea_orm;

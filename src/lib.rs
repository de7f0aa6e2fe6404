//! tenantgraph: a GraphQL API server for multi-tenant SaaS back-ends, one PostgreSQL schema per
//! tenant, and a library to build such a server with tenant tables of your own.
//!
//! # Building on it
//!
//! [`app::TenantGraph::builder`] takes an application's tenant migrations, permissions and
//! async-graphql objects and returns the server, the CLI and the SDL with them merged into the
//! built-in ones; [`app::TenantDataExt::tenant_data`] is how its resolvers reach the caller's
//! tenant. What they name besides is public too: [`config::Config`], [`startup::Application`],
//! [`error::AppError`], the [`graphql`] helpers (page sizes and costs, ids, the built-in types)
//! and the [`cli::Cli`]. `examples/parish` is a whole application.
//!
//! ```
//! // The built-in server, as the `tenantgraph` binary runs it.
//! let server = tenantgraph::app::TenantGraph::built_in();
//! assert!(server.sdl().contains("type Tenant"));
//! ```
//!
//! Modules hidden from this documentation (`auth`, `db`, `http`, `primitives`, `state`,
//! `telemetry`, `tenancy`) are public only for this repository's integration tests and
//! benchmark: they are no API, and a resolver that used them could step around the pinned
//! tenant transaction.
//!
//! # Layout
//!
//! - `primitives` (schema names, credential rules, lock keys, metrics), [`error`] and [`config`]
//!   are the ground everything else stands on; they name nothing above them.
//! - [`config`] reads the environment; [`startup`] wires everything into an [`startup::Application`].
//! - `db` owns the pool, the embedded PostgreSQL default and the public migrations.
//! - `auth` decides who calls; `tenancy` owns the tenant life cycle; `tenant_data` is a
//!   tenant's own users, people, roles and settings, reached only through its pinned transaction.
//! - `webhooks` tells operators' receivers of tenant life-cycle events, from an outbox.
//! - [`graphql`] is the API (thin resolvers over the services); `http` serves it.
//! - [`app`] assembles the server with an application's additions.

pub mod app;
pub(crate) mod audit;
#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod batch;
pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod db;
pub mod error;
pub mod graphql;
#[doc(hidden)]
pub mod http;
#[doc(hidden)]
pub mod primitives;
pub mod startup;
#[doc(hidden)]
pub mod state;
#[doc(hidden)]
pub mod telemetry;
#[doc(hidden)]
pub mod tenancy;
pub(crate) mod tenant_data;
pub(crate) mod webhooks;

pub use async_graphql;
pub use entity;
pub use migration::sea_orm_migration;
pub use sea_orm;

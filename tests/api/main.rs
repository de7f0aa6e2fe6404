//! Integration tests: the real app on a real PostgreSQL, spoken to over HTTP and WebSocket.

mod helpers;
#[path = "../support/isolation.rs"]
mod isolation_property;

mod api_keys;
mod auth;
mod backup;
mod batch;
mod bulk_update;
mod cli;
mod clone;
mod conformance;
mod dashboard;
mod database;
mod drift;
mod fair_share;
mod graphiql;
mod graphql_http;
mod guards;
mod health;
mod hostile;
mod isolation;
mod layers;
mod migrations;
mod moves;
mod observability;
mod pgbouncer;
mod rate_limits;
mod resume;
mod schema;
mod servers;
mod sessions;
mod templates;
mod tenant_auth;
mod tenant_data;
mod tenants;
mod throttle;
mod tokens;
mod typed_states;
mod webhooks;
mod websocket;

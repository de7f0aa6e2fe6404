//! Integration tests: the real app on a real PostgreSQL, spoken to over HTTP and WebSocket.

mod helpers;

mod auth;
mod batch;
mod cli;
mod database;
mod graphiql;
mod health;
mod hostile;
mod isolation;
mod layers;
mod migrations;
mod observability;
mod schema;
mod tenant_auth;
mod tenant_data;
mod tenants;
mod throttle;
mod tokens;
mod websocket;

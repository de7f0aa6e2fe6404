//! Integration tests: the real app on a real PostgreSQL, spoken to over HTTP and WebSocket.

mod helpers;

mod auth;
mod health;
mod schema;

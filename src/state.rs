//! The state every request shares, built once at start-up.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{jwt::JwtKeys, password::PasswordHasherPool},
    config::Config,
    http::metrics::Metrics,
};

/// Shared by the HTTP handlers and handed to GraphQL once as schema data.
pub struct AppState {
    pub config: Config,
    /// The pool; tenant-scoped work never uses it directly but through a pinned transaction.
    pub db: DatabaseConnection,
    pub jwt: JwtKeys,
    pub passwords: PasswordHasherPool,
    pub metrics: Metrics,
}

pub type SharedState = Arc<AppState>;

//! The state every request shares, built once at start-up.

use std::sync::Arc;

use crate::{
    auth::{
        access::Access, jwt::JwtKeys, password::PasswordHasherPool, rate_limit::RateLimits,
        throttle::LoginThrottle,
    },
    batch::{Runs, events::EventHub},
    config::Config,
    db::{Pool, servers::DbServers, share::DbShares},
    primitives::metrics::Metrics,
    tenancy::{activity::ActivityTracker, directory::TenantDirectory},
    webhooks::sender::Sender,
};

/// Shared by the HTTP handlers and handed to GraphQL once as schema data.
pub struct AppState {
    pub config: Config,
    /// The control database's pool (the registry); tenant-scoped work never uses it directly but
    /// through a pinned transaction on its tenant's server.
    pub db: Pool,
    /// A pool for each database server tenants live on, the control database's included.
    pub servers: DbServers,
    /// Each tenant's and each request's share of the pool.
    pub db_shares: DbShares,
    pub jwt: JwtKeys,
    pub passwords: PasswordHasherPool,
    pub metrics: Metrics,
    /// Cached registry entries and role permissions for authenticating tenant requests.
    pub directory: TenantDirectory,
    /// Cached session states, and the feed of access events both caches share.
    pub access: Access,
    pub login_throttle: LoginThrottle,
    /// Request-rate buckets of tenants and platform operators.
    pub rate_limits: RateLimits,
    pub activity: ActivityTracker,
    /// Progress events of batches, for subscribers.
    pub events: EventHub,
    /// The batches this server runs, and whether it is draining them.
    pub batches: Runs,
    /// The webhook sender's client and wake-up call.
    pub webhooks: Sender,
}

pub type SharedState = Arc<AppState>;

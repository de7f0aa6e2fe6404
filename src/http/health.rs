//! Liveness and readiness probes.

use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode};
use serde_json::{Value, json};

use crate::{
    db::{Pool, servers::CONTROL_SERVER},
    http::HttpState,
    tenancy::servers,
};

/// How long each database may take to answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process serves requests.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// Readiness: the control database (the registry) answers within two seconds; 503 when it does
/// not. Every other database server is reported too, answering or not: one that is down takes
/// only its own tenants out (`status` is then `degraded`, still 200).
pub async fn database(State(http): State<HttpState>) -> (StatusCode, Json<Value>) {
    let state = &http.state;
    let control = ping(&state.db).await;
    if control != "up" {
        tracing::warn!(database = control, "database readiness check failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "database": control })),
        );
    }
    // Names and states only: a probe never counts the registry's tenants.
    let others = servers::registered(&state.db).await.unwrap_or_default();
    let reports = futures_util::future::join_all(others.into_iter().map(|server| async move {
        let database = match state.servers.pool(Some(&server.name)).await {
            Ok(pool) => ping(&pool).await,
            Err(_) => "down",
        };
        json!({ "name": server.name, "state": server.state, "database": database })
    }))
    .await;
    let all_up = reports.iter().all(|report| report["database"] == "up");
    let mut servers = vec![json!({ "name": CONTROL_SERVER, "state": "ACTIVE", "database": "up" })];
    servers.extend(reports);
    (
        StatusCode::OK,
        Json(json!({
            "status": if all_up { "ok" } else { "degraded" },
            "database": "up",
            "servers": servers,
        })),
    )
}

/// `up`, `down` or `timeout`.
async fn ping(pool: &Pool) -> &'static str {
    match tokio::time::timeout(PING_TIMEOUT, pool.ping()).await {
        Ok(Ok(())) => "up",
        Ok(Err(_)) => "down",
        Err(_) => "timeout",
    }
}

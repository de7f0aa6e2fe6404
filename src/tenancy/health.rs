//! Checking a tenant's schema against what the registry says about it.

use entity::public::tenants;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};

use crate::{
    error::AppResult,
    tenancy::{
        drift, migrator,
        registry::{missing_tables, schema_of},
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    /// The database could not be asked.
    Error,
}

#[derive(Debug, Clone)]
pub struct HealthReport {
    pub status: HealthStatus,
    pub schema_exists: bool,
    pub missing_tables: Vec<String>,
    /// The schema's ledger and the registry name the same revision.
    pub revision_matches: bool,
    /// The schema's structure differs from its revision's (see [`drift`]).
    pub drifted: bool,
    pub db_accessible: bool,
}

pub async fn check(
    db: &(impl TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait),
    tenant: &tenants::Model,
) -> HealthReport {
    match inspect(db, tenant).await {
        Ok(report) => report,
        Err(err) => {
            tracing::warn!(tenant = %tenant.id, error = ?err, "tenant health check could not reach the database");
            HealthReport {
                status: HealthStatus::Error,
                schema_exists: false,
                missing_tables: Vec::new(),
                revision_matches: false,
                drifted: false,
                db_accessible: false,
            }
        }
    }
}

async fn inspect(
    db: &(impl TransactionTrait<Transaction = DatabaseTransaction> + ConnectionTrait),
    tenant: &tenants::Model,
) -> AppResult<HealthReport> {
    let schema = schema_of(tenant);
    let schema_exists = migrator::schema_exists(db, &schema).await?;
    let (missing, revision_matches) = if schema_exists {
        let migrations = migrator::status(db, &schema).await?;
        (
            missing_tables(db, &schema).await?,
            migrations.current_revision() == tenant.current_revision.as_deref(),
        )
    } else {
        (
            migration::tenant_tables()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            false,
        )
    };
    let drifted = schema_exists && drift::tenant_drift(db, tenant).await?.drifted();
    let healthy = schema_exists && missing.is_empty() && revision_matches && !drifted;
    Ok(HealthReport {
        status: if healthy {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        },
        schema_exists,
        missing_tables: missing,
        revision_matches,
        drifted,
        db_accessible: true,
    })
}

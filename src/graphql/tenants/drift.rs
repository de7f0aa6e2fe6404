//! Schema drift over GraphQL (platform operators only).

use async_graphql::{Context, Enum, ID, Object, SimpleObject};

use crate::{
    graphql::{ContextExt, parse_id},
    tenancy::{drift, registry, servers},
};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::tenancy::drift::DriftKind")]
pub enum DriftKind {
    /// The revision has it; the schema does not.
    Missing,
    /// The schema has it; the revision does not.
    Unexpected,
    /// Both have it, defined differently.
    Changed,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::tenancy::drift::ObjectType")]
pub enum DriftObjectType {
    Table,
    Column,
    Index,
    Constraint,
}

/// One way a tenant's schema differs from the structure of its revision.
#[derive(SimpleObject, Debug, Clone)]
pub struct DriftDifference {
    pub kind: DriftKind,
    pub object_type: DriftObjectType,
    /// `table`, `table.column`, the index's name, or `table.constraint`.
    pub name: String,
    /// The definitions expected and found, without the schema's name.
    pub detail: String,
}

/// A tenant's schema compared with the structure its revision should have.
#[derive(SimpleObject, Debug, Clone)]
pub struct TenantDrift {
    pub tenant_id: ID,
    pub schema_name: String,
    /// The revision the schema's ledger records, which it was compared with; null at base.
    pub revision: Option<String>,
    pub drifted: bool,
    pub differences: Vec<DriftDifference>,
}

impl From<drift::TenantDrift> for TenantDrift {
    fn from(found: drift::TenantDrift) -> Self {
        TenantDrift {
            tenant_id: ID(found.tenant_id.to_string()),
            drifted: found.drifted(),
            schema_name: found.schema_name,
            revision: found.revision,
            differences: found
                .differences
                .into_iter()
                .map(|d| DriftDifference {
                    kind: d.kind.into(),
                    object_type: d.object_type.into(),
                    name: d.name,
                    detail: d.detail,
                })
                .collect(),
        }
    }
}

/// Every live tenant checked for drift.
#[derive(SimpleObject, Debug, Clone)]
pub struct DriftReport {
    /// Tenants checked.
    pub checked: u64,
    /// How many of them drifted.
    pub drifted: u64,
    /// The drifted tenants only, oldest first.
    pub tenants: Vec<TenantDrift>,
}

#[derive(Default)]
pub struct DriftQuery;

#[Object]
impl DriftQuery {
    /// Compares the tenant's tables, columns (types, nullability, defaults), indexes and
    /// constraints with what its revision should have.
    async fn tenant_drift(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> async_graphql::Result<TenantDrift> {
        ctx.request().require_platform()?;
        let state = ctx.state();
        let tenant = registry::find_live(&state.db, parse_id("tenantId", &tenant_id)?).await?;
        let db = servers::pool_of(state, &tenant).await?;
        Ok(drift::tenant_drift(&db, &tenant).await?.into())
    }

    /// Checks every live tenant, `MAX_CONCURRENT_OPERATIONS` at a time, and lists those that
    /// drifted.
    async fn drift_report(&self, ctx: &Context<'_>) -> async_graphql::Result<DriftReport> {
        ctx.request().require_platform()?;
        let state = ctx.state();
        let report =
            drift::fleet_report(state, state.config.max_concurrent_operations as usize).await?;
        Ok(DriftReport {
            checked: report.checked as u64,
            drifted: report.drifted.len() as u64,
            tenants: report.drifted.into_iter().map(Into::into).collect(),
        })
    }
}

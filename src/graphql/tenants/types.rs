use async_graphql::{Enum, ID, Object, SimpleObject};

use crate::tenancy::{migrator::SchemaMigrations, provision::Created};
use chrono::{DateTime, FixedOffset};
use entity::public::tenants;

use crate::primitives::permissions::stored_api_key_scope;
use crate::tenancy::validation::SettingsDraft;

/// Where a tenant is in its life cycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::tenancy::TenantStatus")]
pub enum TenantStatus {
    Pending,
    Provisioning,
    Active,
    Failed,
    Inactive,
}

/// Resource limits of a tenant.
#[derive(SimpleObject, Debug, Clone, Default)]
pub struct TenantLimits {
    pub users: Option<i32>,
    pub storage_gb: Option<i32>,
    /// Operations the tenant may start per minute; null: `TENANT_RATE_LIMIT_PER_MINUTE`.
    pub requests_per_minute: Option<i32>,
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct TenantSettings {
    pub features: Vec<String>,
    pub limits: TenantLimits,
}

impl From<SettingsDraft> for TenantSettings {
    fn from(settings: SettingsDraft) -> Self {
        let limits = settings.limits.unwrap_or_default();
        TenantSettings {
            features: settings.features.unwrap_or_default(),
            limits: TenantLimits {
                users: limits.users,
                storage_gb: limits.storage_gb,
                requests_per_minute: limits.requests_per_minute,
            },
        }
    }
}

/// A tenant of the registry.
pub struct Tenant(pub tenants::Model);

#[Object]
impl Tenant {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn tenant_name(&self) -> &str {
        &self.0.tenant_name
    }
    async fn domain(&self) -> &str {
        &self.0.domain
    }
    async fn tenant_type(&self) -> &str {
        &self.0.tenant_type
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    async fn website(&self) -> Option<&str> {
        self.0.website.as_deref()
    }
    async fn address(&self) -> Option<&str> {
        self.0.address.as_deref()
    }
    async fn city(&self) -> Option<&str> {
        self.0.city.as_deref()
    }
    async fn state(&self) -> Option<&str> {
        self.0.state.as_deref()
    }
    async fn schema_name(&self) -> &str {
        &self.0.schema_name
    }
    async fn schema_provisioned(&self) -> bool {
        self.0.schema_provisioned
    }
    async fn migrations_applied(&self) -> bool {
        self.0.migrations_applied
    }
    /// The last tenant migration applied to the schema; null at base.
    async fn current_revision(&self) -> Option<&str> {
        self.0.current_revision.as_deref()
    }
    async fn status(&self) -> TenantStatus {
        self.0.status.into()
    }
    /// Why provisioning last failed, when it did.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn settings(&self) -> TenantSettings {
        SettingsDraft::from_json(&self.0.settings).into()
    }
    /// The first characters of the current API key, to tell keys apart; the key itself is never
    /// readable after creation.
    async fn api_key_prefix(&self) -> Option<&str> {
        self.0.api_key_prefix.as_deref()
    }
    /// The permission codes the current API key may use (never the key itself).
    async fn api_key_permissions(&self) -> Vec<String> {
        stored_api_key_scope(&self.0.api_key_permissions)
            .into_iter()
            .map(|permission| permission.code().to_owned())
            .collect()
    }
    async fn created_at(&self) -> DateTime<FixedOffset> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<FixedOffset> {
        self.0.updated_at
    }
    async fn last_activity_at(&self) -> Option<DateTime<FixedOffset>> {
        self.0.last_activity_at
    }
    /// The database server the tenant's schema lives on (`control`: the control database);
    /// null for anybody but a platform operator.
    async fn server(&self, ctx: &async_graphql::Context<'_>) -> Option<&str> {
        use crate::graphql::ContextExt;
        ctx.request().require_platform().ok()?;
        Some(
            self.0
                .server_name
                .as_deref()
                .unwrap_or(crate::db::servers::CONTROL_SERVER),
        )
    }
}

/// Where a tenant's schema stands in its own migration history.
#[derive(SimpleObject, Debug, Clone)]
pub struct MigrationStatus {
    pub tenant_id: ID,
    pub schema_name: String,
    /// The last applied migration; null at base.
    pub current_revision: Option<String>,
    pub applied_migrations: Vec<String>,
    pub pending_migrations: Vec<String>,
    pub schema_provisioned: bool,
    /// Every migration is applied.
    pub migrations_applied: bool,
}

impl MigrationStatus {
    pub fn new(tenant: &tenants::Model, schema_exists: bool, migrations: SchemaMigrations) -> Self {
        MigrationStatus {
            tenant_id: ID(tenant.id.to_string()),
            schema_name: tenant.schema_name.clone(),
            current_revision: migrations.current_revision().map(str::to_owned),
            migrations_applied: schema_exists && migrations.at_head(),
            applied_migrations: migrations.applied,
            pending_migrations: migrations.pending,
            schema_provisioned: schema_exists,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::tenancy::health::HealthStatus")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Error,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct TenantHealth {
    pub tenant_id: ID,
    pub status: HealthStatus,
    pub schema_exists: bool,
    /// Tables a provisioned tenant must have that its schema lacks.
    pub missing_tables: Vec<String>,
    /// The schema's migration ledger and the registry agree on the revision.
    pub revision_matches: bool,
    /// The schema's structure differs from its revision's (details in `tenantDrift`).
    pub drifted: bool,
    pub db_accessible: bool,
}

/// What `createTenant` made.
#[derive(SimpleObject)]
pub struct TenantProvisionResult {
    pub tenant: Tenant,
    /// The tenant's API key, shown this once; only its hash is stored.
    pub api_key: String,
    pub schema_created: bool,
    pub migrations_applied: bool,
    pub migration_status: MigrationStatus,
    pub message: String,
}

impl From<Created> for TenantProvisionResult {
    fn from(created: Created) -> Self {
        let status =
            MigrationStatus::new(&created.tenant, created.schema_created, created.migrations);
        TenantProvisionResult {
            api_key: created.api_key,
            schema_created: created.schema_created,
            migrations_applied: status.migrations_applied,
            migration_status: status,
            message: created.message,
            tenant: Tenant(created.tenant),
        }
    }
}

#[derive(SimpleObject)]
pub struct DeleteTenantResult {
    pub tenant_id: ID,
    pub schema_name: String,
    /// The schema and its data were dropped; otherwise they are kept for a restore.
    pub schema_dropped: bool,
}

#[derive(SimpleObject, Default)]
pub struct TotalCount {
    /// Tenants matching the filter, across all pages.
    pub total_count: u64,
}

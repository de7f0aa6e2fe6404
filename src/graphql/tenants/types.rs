use async_graphql::{Enum, ID, Object, SimpleObject};
use chrono::{DateTime, FixedOffset};
use entity::public::tenants;

/// Where a tenant is in its life cycle.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TenantStatus {
    Pending,
    Provisioning,
    Active,
    Failed,
    Inactive,
}

impl TenantStatus {
    pub fn as_db(self) -> &'static str {
        match self {
            TenantStatus::Pending => "PENDING",
            TenantStatus::Provisioning => "PROVISIONING",
            TenantStatus::Active => "ACTIVE",
            TenantStatus::Failed => "FAILED",
            TenantStatus::Inactive => "INACTIVE",
        }
    }

    pub fn from_db(value: &str) -> Option<Self> {
        [
            TenantStatus::Pending,
            TenantStatus::Provisioning,
            TenantStatus::Active,
            TenantStatus::Failed,
            TenantStatus::Inactive,
        ]
        .into_iter()
        .find(|status| status.as_db() == value)
    }
}

/// Resource limits of a tenant.
#[derive(SimpleObject, Debug, Clone, Default)]
pub struct TenantLimits {
    pub users: Option<i32>,
    pub storage_gb: Option<i32>,
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct TenantSettings {
    pub features: Vec<String>,
    pub limits: TenantLimits,
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
        TenantStatus::from_db(&self.0.status).unwrap_or(TenantStatus::Failed)
    }
    /// Why provisioning last failed, when it did.
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn settings(&self) -> TenantSettings {
        settings_from_json(&self.0.settings)
    }
    /// The first characters of the current API key, to tell keys apart; the key itself is never
    /// readable after creation.
    async fn api_key_prefix(&self) -> Option<&str> {
        self.0.api_key_prefix.as_deref()
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
}

/// Reads the registry's `settings` JSON (`{"features": [...], "limits": {...}}`).
pub fn settings_from_json(json: &serde_json::Value) -> TenantSettings {
    let limit = |name: &str| {
        json.pointer(&format!("/limits/{name}"))
            .and_then(serde_json::Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
    };
    TenantSettings {
        features: json
            .get("features")
            .and_then(serde_json::Value::as_array)
            .map(|features| {
                features
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        limits: TenantLimits {
            users: limit("users"),
            storage_gb: limit("storageGb"),
        },
    }
}

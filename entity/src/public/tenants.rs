use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub tenant_name: String,
    #[sea_orm(column_type = "Text", unique)]
    pub domain: String,
    #[sea_orm(column_type = "Text", unique)]
    pub schema_name: String,
    #[sea_orm(column_type = "Text")]
    pub tenant_type: String,
    #[sea_orm(column_type = "Text")]
    pub email: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub phone: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub website: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub address: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub city: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub state: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    #[sea_orm(column_type = "JsonBinary")]
    pub settings: Json,
    /// PENDING | PROVISIONING | ACTIVE | FAILED | INACTIVE (CHECK constraint).
    pub status: TenantStatus,
    pub schema_provisioned: bool,
    pub migrations_applied: bool,
    /// Last tenant migration applied; `None` = base.
    #[sea_orm(column_type = "Text", nullable)]
    pub current_revision: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub failure_reason: Option<String>,
    /// The super admin awaiting the migrated schema: `{"email", "name", "passwordHash"}`.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub pending_admin: Option<Json>,
    /// Roles from a template awaiting the migrated schema: `[{"name", "permissions"}]`.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub pending_roles: Option<Json>,
    /// Hex SHA-256 of the API key.
    #[sea_orm(column_type = "Text", nullable, unique)]
    pub api_key_hash: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub api_key_prefix: Option<String>,
    pub api_key_created_at: Option<DateTimeWithTimeZone>,
    /// The permission codes the API key may use (a JSON array; CHECK constraint).
    #[sea_orm(column_type = "JsonBinary")]
    pub api_key_permissions: Json,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
    pub last_activity_at: Option<DateTimeWithTimeZone>,
    pub deleted_at: Option<DateTimeWithTimeZone>,
    /// The `database_servers` row the tenant's schema lives on; `None` is the control database.
    #[sea_orm(column_type = "Text", nullable)]
    pub server_name: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where a tenant is in its life cycle (`status`; the table's CHECK allows these values only).
#[derive(Copy, Clone, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum TenantStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "PROVISIONING")]
    Provisioning,
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "INACTIVE")]
    Inactive,
}

impl TenantStatus {
    /// The stored value, for SQL written by hand.
    pub fn as_db(self) -> &'static str {
        match self {
            TenantStatus::Pending => "PENDING",
            TenantStatus::Provisioning => "PROVISIONING",
            TenantStatus::Active => "ACTIVE",
            TenantStatus::Failed => "FAILED",
            TenantStatus::Inactive => "INACTIVE",
        }
    }
}

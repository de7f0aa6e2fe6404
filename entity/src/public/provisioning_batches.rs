use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "provisioning_batches")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: BatchKind,
    pub status: BatchStatus,
    #[sea_orm(column_type = "JsonBinary")]
    pub options: Json,
    #[sea_orm(column_type = "Text", nullable)]
    pub target_revision: Option<String>,
    pub total: i32,
    pub successful: i32,
    pub failed: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub created_by: Option<String>,
    pub created_at: DateTimeWithTimeZone,
    pub started_at: Option<DateTimeWithTimeZone>,
    pub finished_at: Option<DateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::provisioning_jobs::Entity")]
    Jobs,
}

impl Related<super::provisioning_jobs::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Jobs.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// What a batch does (`kind`; CHECK constraint).
#[derive(
    Copy,
    Clone,
    Debug,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchKind {
    #[sea_orm(string_value = "PROVISION")]
    Provision,
    #[sea_orm(string_value = "MIGRATE")]
    Migrate,
    #[sea_orm(string_value = "UPDATE")]
    Update,
    #[sea_orm(string_value = "MOVE")]
    Move,
}

impl BatchKind {
    /// The stored value.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Where a batch is (`status`; CHECK constraint).
#[derive(
    Copy,
    Clone,
    Debug,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "RUNNING")]
    Running,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "PARTIALLY_FAILED")]
    PartiallyFailed,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "ROLLED_BACK")]
    RolledBack,
}

impl BatchStatus {
    /// The stored value.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

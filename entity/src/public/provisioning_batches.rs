use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "provisioning_batches")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// PROVISION | MIGRATE
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    /// PENDING | RUNNING | SUCCEEDED | PARTIALLY_FAILED | FAILED | ROLLED_BACK
    #[sea_orm(column_type = "Text")]
    pub status: String,
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

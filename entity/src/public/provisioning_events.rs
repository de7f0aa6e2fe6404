use sea_orm::entity::prelude::*;

/// One step event of a batch, kept so that a late progress subscriber misses nothing.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "provisioning_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub batch_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub tenant_name: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub schema_name: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub step: String,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    pub completed: i32,
    pub total: i32,
    pub at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

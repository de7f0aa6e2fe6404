use sea_orm::entity::prelude::*;

/// Singleton: the key is always `true` (CHECK constraint), so there is at most one row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenant_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: bool,
    #[sea_orm(column_type = "Text")]
    pub display_name: String,
    /// Array of enabled feature names.
    #[sea_orm(column_type = "JsonBinary")]
    pub features: Json,
    /// `{"users": N, "storageGb": N}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub limits: Json,
    #[sea_orm(column_type = "Text")]
    pub timezone: String,
    #[sea_orm(column_type = "Text")]
    pub locale: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub extra: Json,
    pub updated_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

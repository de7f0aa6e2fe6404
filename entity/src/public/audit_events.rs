use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "audit_events")]
pub struct Model {
    /// `GENERATED ALWAYS AS IDENTITY`: leave it `NotSet` on insert.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub occurred_at: DateTimeWithTimeZone,
    #[sea_orm(column_type = "Text")]
    pub actor_kind: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub actor_id: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub action: String,
    /// Deliberately not a foreign key: audit history outlives the tenant row.
    pub tenant_id: Option<Uuid>,
    /// SUCCESS | FAILURE (CHECK constraint).
    #[sea_orm(column_type = "Text")]
    pub outcome: String,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub detail: Option<Json>,
    #[sea_orm(column_type = "Text", nullable)]
    pub client_addr: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

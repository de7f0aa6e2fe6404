use sea_orm::entity::prelude::*;

/// Defaults for new tenants: of `tenant_type` (at most one template a type), or of any type when
/// named in `createTenant`. Changing a template never touches the tenants made from it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "tenant_templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Unique without regard to case.
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text", nullable, unique)]
    pub tenant_type: Option<String>,
    /// Validated settings: `{"features": [...], "limits": {...}}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub settings: Json,
    /// Extra roles: `[{"name", "permissions": [code, ...]}]`.
    #[sea_orm(column_type = "JsonBinary")]
    pub roles: Json,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

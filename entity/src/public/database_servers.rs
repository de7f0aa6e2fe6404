use sea_orm::entity::prelude::*;

/// A PostgreSQL server tenants may be placed on, besides the control database. `url` holds the
/// password: never log a model of this table nor answer it to a client.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "database_servers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub url: String,
    /// ACTIVE | DRAINING | DOWN (CHECK constraint).
    #[sea_orm(column_type = "Text")]
    pub state: String,
    /// How many tenants placement may put there; `None` is no limit.
    pub capacity: Option<i32>,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("database_servers::Model")
            .field("name", &self.name)
            .field("url", &"[redacted]")
            .field("state", &self.state)
            .field("capacity", &self.capacity)
            .finish()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// A login: who, in which tenant (none for platform operators), from where, and whether it has
/// been ended. Access tokens name their session (`sid`); refresh tokens belong to one.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// platform | tenant (CHECK constraint, with `tenant_id` set exactly for tenant sessions).
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    /// Deliberately not a foreign key: a session's history outlives the tenant row.
    pub tenant_id: Option<Uuid>,
    pub user_id: Uuid,
    /// Hex SHA-256 of the user's password hash when the session began.
    #[sea_orm(column_type = "Text", nullable)]
    pub password_fingerprint: Option<String>,
    pub created_at: DateTimeWithTimeZone,
    pub last_used_at: DateTimeWithTimeZone,
    #[sea_orm(column_type = "Text", nullable)]
    pub client_addr: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub user_agent: Option<String>,
    pub revoked_at: Option<DateTimeWithTimeZone>,
    #[sea_orm(column_type = "Text", nullable)]
    pub revoked_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::refresh_tokens::Entity")]
    RefreshTokens,
}

impl Related<super::refresh_tokens::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RefreshTokens.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

use sea_orm::entity::prelude::*;

/// One event for one webhook (the outbox): written with the change it announces, then sent
/// and retried until the receiver accepts it or the attempts run out.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub webhook_id: Uuid,
    #[sea_orm(column_type = "Text")]
    pub event: String,
    /// The event's `data`, as sent.
    #[sea_orm(column_type = "JsonBinary")]
    pub data: Json,
    /// `PENDING`, `DELIVERED` or `FAILED`.
    #[sea_orm(column_type = "Text")]
    pub status: String,
    pub attempts: i32,
    /// When a pending delivery is due, or when the claim of a running attempt lapses.
    pub next_attempt_at: DateTimeWithTimeZone,
    pub last_status_code: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTimeWithTimeZone,
    pub delivered_at: Option<DateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::webhooks::Entity",
        from = "Column::WebhookId",
        to = "super::webhooks::Column::Id",
        on_delete = "Cascade"
    )]
    Webhook,
}

impl Related<super::webhooks::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Webhook.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

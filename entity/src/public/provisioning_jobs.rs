use sea_orm::entity::prelude::*;

pub use super::provisioning_events::Step;

/// One tenant of a batch.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(schema_name = "public", table_name = "provisioning_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub batch_id: Uuid,
    pub position: i32,
    #[sea_orm(column_type = "Text")]
    pub tenant_name: String,
    #[sea_orm(column_type = "Text")]
    pub domain: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub schema_name: Option<String>,
    pub tenant_id: Option<Uuid>,
    pub status: JobStatus,
    /// The step last started.
    pub step: Option<Step>,
    pub attempts: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub error_code: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error_message: Option<String>,
    pub started_at: Option<DateTimeWithTimeZone>,
    pub finished_at: Option<DateTimeWithTimeZone>,
    pub duration_ms: Option<i64>,
    /// What running the job again needs (see `batch::JobInput`).
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub input: Option<Json>,
    /// The job was interrupted by a stopped server and run again.
    pub resumed: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::provisioning_batches::Entity",
        from = "Column::BatchId",
        to = "super::provisioning_batches::Column::Id",
        on_delete = "Cascade"
    )]
    Batch,
}

impl Related<super::provisioning_batches::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Batch.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// Where one tenant's job of a batch is (`status`; CHECK constraint).
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
pub enum JobStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "RUNNING")]
    Running,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "ROLLED_BACK")]
    RolledBack,
}

impl JobStatus {
    /// The stored value.
    pub fn name(self) -> &'static str {
        self.into()
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, JobStatus::Pending | JobStatus::Running)
    }
}

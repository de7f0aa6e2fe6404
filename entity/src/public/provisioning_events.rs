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
    pub step: Step,
    pub status: StepStatus,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    pub completed: i32,
    pub total: i32,
    pub at: DateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The steps of provisioning (or migrating) a tenant, as errors and progress events name them (CHECK constraint).
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
pub enum Step {
    #[sea_orm(string_value = "VALIDATE")]
    Validate,
    #[sea_orm(string_value = "CREATE_SCHEMA")]
    CreateSchema,
    #[sea_orm(string_value = "MIGRATE")]
    Migrate,
    #[sea_orm(string_value = "SEED")]
    Seed,
    #[sea_orm(string_value = "REGISTER")]
    Register,
    #[sea_orm(string_value = "API_KEY")]
    ApiKey,
    #[sea_orm(string_value = "VERIFY")]
    Verify,
    #[sea_orm(string_value = "ROLLBACK")]
    Rollback,
    #[sea_orm(string_value = "DONE")]
    Done,
}

impl Step {
    /// The stored value.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// How a step went, as progress events report it (CHECK constraint).
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
pub enum StepStatus {
    #[sea_orm(string_value = "STARTED")]
    Started,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "RETRYING")]
    Retrying,
}

impl StepStatus {
    /// The stored value.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

use sea_orm_migration::{prelude::*, schema::*};

use crate::columns::{jsonb_default, timestamptz_now};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TenantSettings::Table)
                    // A boolean key that must be true admits exactly one row.
                    .col(
                        boolean(TenantSettings::Id)
                            .primary_key()
                            .default(true)
                            .check(("tenant_settings_singleton", Expr::col(TenantSettings::Id))),
                    )
                    .col(text(TenantSettings::DisplayName))
                    // Array of enabled feature names.
                    .col(jsonb_default(TenantSettings::Features, "[]"))
                    // {"users": N, "storageGb": N}
                    .col(jsonb_default(TenantSettings::Limits, "{}"))
                    .col(text(TenantSettings::Timezone).default("UTC"))
                    .col(text(TenantSettings::Locale).default("en"))
                    .col(jsonb_default(TenantSettings::Extra, "{}"))
                    .col(timestamptz_now(TenantSettings::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Ids are assigned here, not generated: users.status_id defaults to 1 = 'active'.
        manager
            .create_table(
                Table::create()
                    .table(UserStatuses::Table)
                    .col(small_integer(UserStatuses::Id).primary_key())
                    .col(text_uniq(UserStatuses::Code))
                    .col(text(UserStatuses::Description))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO user_statuses (id, code, description) VALUES
                    (1, 'active', 'Can sign in'),
                    (2, 'inactive', 'Deactivated; cannot sign in'),
                    (3, 'suspended', 'Blocked by an administrator'),
                    (4, 'pending', 'Invited; has not completed sign-up')
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(UserStatuses::Table)
                    .table(TenantSettings::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum TenantSettings {
    Table,
    Id,
    DisplayName,
    Features,
    Limits,
    Timezone,
    Locale,
    Extra,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserStatuses {
    Table,
    Id,
    Code,
    Description,
}

use sea_orm_migration::{prelude::*, schema::*};

use crate::columns::{pk_uuid, timestamptz_now};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PlatformUsers::Table)
                    .col(pk_uuid(PlatformUsers::Id))
                    // Stored lower-case, so a plain unique constraint is case-insensitive.
                    .col(text_uniq(PlatformUsers::Email))
                    .col(text(PlatformUsers::PasswordHash))
                    .col(text_null(PlatformUsers::Name))
                    .col(boolean(PlatformUsers::IsActive).default(true))
                    .col(timestamptz_now(PlatformUsers::CreatedAt))
                    .col(timestamptz_now(PlatformUsers::UpdatedAt))
                    .col(timestamp_with_time_zone_null(PlatformUsers::LastLoginAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PlatformUsers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum PlatformUsers {
    Table,
    Id,
    Email,
    PasswordHash,
    Name,
    IsActive,
    CreatedAt,
    UpdatedAt,
    LastLoginAt,
}

use sea_orm_migration::{prelude::*, schema::*};

use crate::columns::{pk_uuid, timestamptz_now};

/// `user_statuses.id` of 'active', seeded by the previous migration.
const ACTIVE_STATUS_ID: i16 = 1;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .col(pk_auto(Roles::Id))
                    .col(text_uniq(Roles::Name))
                    .col(text(Roles::Description))
                    .col(boolean(Roles::IsSystem).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO roles (name, description, is_system) VALUES
                    ('admin', 'Full access to the tenant', true),
                    ('member', 'Manages people; reads users, roles and settings', true),
                    ('viewer', 'Read-only access', true)
                 ON CONFLICT DO NOTHING",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    // Stored lower-case, so a plain unique constraint is case-insensitive.
                    .col(text_uniq(Users::Email))
                    // NULL until the user sets a password (e.g. invited users).
                    .col(text_null(Users::PasswordHash))
                    .col(text_null(Users::Name))
                    .col(small_integer(Users::StatusId).default(ACTIVE_STATUS_ID))
                    .col(timestamptz_now(Users::CreatedAt))
                    .col(timestamptz_now(Users::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Users::LastLoginAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_users_status_id")
                            .from(Users::Table, Users::StatusId)
                            .to(UserStatuses::Table, UserStatuses::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserRoles::Table)
                    .col(uuid(UserRoles::UserId))
                    .col(integer(UserRoles::RoleId))
                    .primary_key(
                        Index::create()
                            .name("pk_user_roles")
                            .col(UserRoles::UserId)
                            .col(UserRoles::RoleId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_roles_user_id")
                            .from(UserRoles::Table, UserRoles::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_roles_role_id")
                            .from(UserRoles::Table, UserRoles::RoleId)
                            .to(Roles::Table, Roles::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The primary key covers lookups by user_id; "who has role X" needs its own index.
        manager
            .create_index(
                Index::create()
                    .name("idx_user_roles_role_id")
                    .table(UserRoles::Table)
                    .col(UserRoles::RoleId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One DROP for all three: PostgreSQL resolves the foreign keys among them.
        manager
            .drop_table(
                Table::drop()
                    .table(UserRoles::Table)
                    .table(Users::Table)
                    .table(Roles::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Id,
    Name,
    Description,
    IsSystem,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Name,
    StatusId,
    CreatedAt,
    UpdatedAt,
    LastLoginAt,
}

#[derive(DeriveIden)]
enum UserRoles {
    Table,
    UserId,
    RoleId,
}

#[derive(DeriveIden)]
enum UserStatuses {
    Table,
    Id,
}

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
                    .table(Person::Table)
                    .col(pk_uuid(Person::Id))
                    .col(text(Person::FirstName))
                    .col(text(Person::LastName))
                    .col(text_null(Person::Email))
                    .col(text_null(Person::Phone))
                    .col(text_null(Person::Address))
                    .col(date_null(Person::BirthDate))
                    .col(text(Person::MembershipStatus).default("member"))
                    .col(text_null(Person::Notes))
                    .col(uuid_null(Person::CreatedBy))
                    .col(timestamptz_now(Person::CreatedAt))
                    .col(timestamptz_now(Person::UpdatedAt))
                    // Deleting a user keeps the people they created.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_person_created_by")
                            .from(Person::Table, Person::CreatedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;

        // Keyset pagination orders by (created_at, id).
        manager
            .create_index(
                Index::create()
                    .name("idx_person_created_at_id")
                    .table(Person::Table)
                    .col(Person::CreatedAt)
                    .col(Person::Id)
                    .to_owned(),
            )
            .await?;
        // Case-insensitive search filters on lower(last_name) and lower(email).
        manager
            .create_index(
                Index::create()
                    .name("idx_person_lower_last_name")
                    .table(Person::Table)
                    .col(Func::lower(Expr::col(Person::LastName)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_person_lower_email")
                    .table(Person::Table)
                    .col(Func::lower(Expr::col(Person::Email)))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Person::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Person {
    Table,
    Id,
    FirstName,
    LastName,
    Email,
    Phone,
    Address,
    BirthDate,
    MembershipStatus,
    Notes,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

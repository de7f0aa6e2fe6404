//! The parish's tenant migrations, applied in each tenant schema after the built-in ones.

use tenantgraph::{
    app::{seed_permissions, unseed_permissions},
    sea_orm_migration::prelude::*,
};

/// The tables these migrations create.
pub const TABLES: &[&str] = &["donations"];

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateDonations)]
}

/// Donations, each optionally from a person of the parish; and who may see and record them.
struct CreateDonations;

impl MigrationName for CreateDonations {
    fn name(&self) -> &str {
        "m20261206_000001_create_donations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDonations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Donations::Table)
                    .col(
                        ColumnDef::new(Donations::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Donations::AmountCents)
                            .integer()
                            .not_null()
                            .check(Expr::col(Donations::AmountCents).gt(0)),
                    )
                    .col(ColumnDef::new(Donations::DonorName).text().not_null())
                    .col(ColumnDef::new(Donations::PersonId).uuid().null())
                    .col(
                        ColumnDef::new(Donations::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null()
                            .default(Expr::current_timestamp()),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_donations_person_id")
                            .from(Donations::Table, Donations::PersonId)
                            .to(Person::Table, Person::Id)
                            // A person's donations stay on the books after the person goes.
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        // The connection's keyset order, and the look-up of a person's donations.
        manager
            .create_index(
                Index::create()
                    .name("idx_donations_created_at_id")
                    .table(Donations::Table)
                    .col(Donations::CreatedAt)
                    .col(Donations::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_donations_person_id")
                    .table(Donations::Table)
                    .col(Donations::PersonId)
                    .to_owned(),
            )
            .await?;
        seed_permissions(manager, super::PERMISSIONS).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        unseed_permissions(manager, super::PERMISSIONS).await?;
        manager
            .drop_table(Table::drop().table(Donations::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Donations {
    Table,
    Id,
    AmountCents,
    DonorName,
    PersonId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Person {
    Table,
    Id,
}

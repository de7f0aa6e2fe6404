use sea_orm_migration::{prelude::*, schema::*};

use crate::columns::{jsonb_default, pk_uuid, timestamptz_now};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(pk_uuid(Tenants::Id))
                    .col(text(Tenants::TenantName))
                    // Unique even across soft-deleted rows: a deleted tenant keeps both reserved.
                    .col(text_uniq(Tenants::Domain))
                    .col(text_uniq(Tenants::SchemaName))
                    .col(text(Tenants::TenantType).default("organization"))
                    .col(text(Tenants::Email))
                    .col(text_null(Tenants::Phone))
                    .col(text_null(Tenants::Website))
                    .col(text_null(Tenants::Address))
                    .col(text_null(Tenants::City))
                    .col(text_null(Tenants::State))
                    .col(text_null(Tenants::Description))
                    .col(jsonb_default(Tenants::Settings, "{}"))
                    .col(text(Tenants::Status).default("PENDING"))
                    .col(boolean(Tenants::SchemaProvisioned).default(false))
                    .col(boolean(Tenants::MigrationsApplied).default(false))
                    // Name of the last tenant migration applied; NULL means base.
                    .col(text_null(Tenants::CurrentRevision))
                    .col(text_null(Tenants::FailureReason))
                    // The super admin to create once the schema is migrated (email, name and an
                    // argon2id hash, never the password); cleared when seeded.
                    .col(json_binary_null(Tenants::PendingAdmin))
                    // Hex SHA-256 of the API key; the key itself is never stored.
                    .col(text_null(Tenants::ApiKeyHash).unique_key())
                    .col(text_null(Tenants::ApiKeyPrefix))
                    .col(timestamp_with_time_zone_null(Tenants::ApiKeyCreatedAt))
                    .col(timestamptz_now(Tenants::CreatedAt))
                    .col(timestamptz_now(Tenants::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Tenants::LastActivityAt))
                    .col(timestamp_with_time_zone_null(Tenants::DeletedAt))
                    .check((
                        "tenants_status_check",
                        Expr::col(Tenants::Status).is_in([
                            "PENDING",
                            "PROVISIONING",
                            "ACTIVE",
                            "FAILED",
                            "INACTIVE",
                        ]),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("idx_tenants_status")
                    .table(Tenants::Table)
                    .col(Tenants::Status)
                    .to_owned(),
            )
            .await?;
        // Keyset pagination orders by (created_at, id).
        manager
            .create_index(
                Index::create()
                    .name("idx_tenants_created_at_id")
                    .table(Tenants::Table)
                    .col(Tenants::CreatedAt)
                    .col(Tenants::Id)
                    .to_owned(),
            )
            .await?;
        // Case-insensitive name search filters on lower(tenant_name).
        manager
            .create_index(
                Index::create()
                    .name("idx_tenants_lower_tenant_name")
                    .table(Tenants::Table)
                    .col(Func::lower(Expr::col(Tenants::TenantName)))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping the table drops its indexes and constraints with it.
        manager
            .drop_table(Table::drop().table(Tenants::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    TenantName,
    Domain,
    SchemaName,
    TenantType,
    Email,
    Phone,
    Website,
    Address,
    City,
    State,
    Description,
    Settings,
    Status,
    SchemaProvisioned,
    MigrationsApplied,
    CurrentRevision,
    FailureReason,
    PendingAdmin,
    ApiKeyHash,
    ApiKeyPrefix,
    ApiKeyCreatedAt,
    CreatedAt,
    UpdatedAt,
    LastActivityAt,
    DeletedAt,
}

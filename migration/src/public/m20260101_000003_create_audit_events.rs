use sea_orm_migration::{prelude::*, schema::*};

use crate::columns::timestamptz_now;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    // ALWAYS (not BY DEFAULT): audit ids are never chosen by the writer.
                    .col(
                        big_integer(AuditEvents::Id)
                            .primary_key()
                            .extra("GENERATED ALWAYS AS IDENTITY"),
                    )
                    .col(timestamptz_now(AuditEvents::OccurredAt))
                    .col(text(AuditEvents::ActorKind))
                    .col(text_null(AuditEvents::ActorId))
                    .col(text(AuditEvents::Action))
                    // No foreign key: a tenant's history outlives its registry row.
                    .col(uuid_null(AuditEvents::TenantId))
                    .col(text(AuditEvents::Outcome))
                    .col(json_binary_null(AuditEvents::Detail))
                    .col(text_null(AuditEvents::ClientAddr))
                    .check((
                        "audit_events_outcome_check",
                        Expr::col(AuditEvents::Outcome).is_in(["SUCCESS", "FAILURE"]),
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_tenant_id_occurred_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::TenantId)
                    .col(AuditEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_audit_events_occurred_at")
                    .table(AuditEvents::Table)
                    .col(AuditEvents::OccurredAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    OccurredAt,
    ActorKind,
    ActorId,
    Action,
    TenantId,
    Outcome,
    Detail,
    ClientAddr,
}

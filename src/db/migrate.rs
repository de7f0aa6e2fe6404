//! The public migration set, run at start-up and by `tenantgraph migrate public`.

use anyhow::Context;
use migration::{PublicMigrator, sea_orm_migration::MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};

use crate::primitives::locks;

/// What `migrate public` should do.
#[derive(Debug, Clone, Copy)]
pub enum PublicMigration {
    Up,
    Down { steps: u32 },
}

/// Applies (or rolls back) public migrations in one transaction under an advisory lock, so two
/// servers starting together apply each migration once and a failure leaves nothing half done.
pub async fn migrate_public(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    action: PublicMigration,
) -> anyhow::Result<()> {
    let txn = locked_public_transaction(db).await?;
    match action {
        PublicMigration::Up => PublicMigrator::up(&txn, None).await,
        PublicMigration::Down { steps } => PublicMigrator::down(&txn, Some(steps)).await,
    }
    .context("public migration failed")?;
    txn.commit().await.context("committing public migrations")?;
    Ok(())
}

/// Each public migration with whether it is applied.
pub async fn public_status(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
) -> anyhow::Result<Vec<(String, bool)>> {
    let txn = locked_public_transaction(db).await?;
    let migrations = PublicMigrator::get_migration_with_status(&txn)
        .await
        .context("reading public migration status")?;
    txn.commit().await?;
    Ok(migrations
        .iter()
        .map(|m| {
            (
                m.name().to_owned(),
                m.status() == migration::sea_orm_migration::MigrationStatus::Applied,
            )
        })
        .collect())
}

async fn locked_public_transaction(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
) -> anyhow::Result<DatabaseTransaction> {
    let txn = db.begin().await.context("starting a transaction")?;
    // `public` only: a schema named after the database user would otherwise come first.
    txn.execute_unprepared(&format!(
        "SET LOCAL search_path TO public; SELECT {}",
        locks::take_public_migrations()
    ))
    .await
    .context("waiting for the public migration lock")?;
    Ok(txn)
}

//! Transactions pinned to one tenant schema.
//!
//! The search path is set with `set_config(.., true)`, the function form of `SET LOCAL`: it ends
//! with the transaction, so a pooled connection never carries a tenant's schema into the next
//! request, and the schema travels as a bound parameter, not as SQL text.

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait,
};

use crate::primitives::schema_name::SchemaName;

/// Begins a transaction whose unqualified table names resolve in `schema` only.
pub async fn begin_in_schema(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    schema: &SchemaName,
) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('search_path', $1, true)",
        [schema.quoted().into()],
    ))
    .await?;
    Ok(txn)
}

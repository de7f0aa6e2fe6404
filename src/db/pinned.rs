//! Transactions pinned to one tenant schema.
//!
//! The search path is set with `set_config(.., true)`, the function form of `SET LOCAL`: it ends
//! with the transaction, so a pooled connection never carries a tenant's schema into the next
//! request, and the schema travels as a bound parameter, not as SQL text.

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
    TransactionTrait,
};
use uuid::Uuid;

use crate::{db::share::DbSlot, primitives::schema_name::SchemaName};

/// Begins a transaction whose unqualified table names resolve in `schema` only. For work on a
/// schema as such (provisioning, migrations, seeding); requests acting for a tenant use
/// [`begin_as_owner`].
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

/// Ends a transaction that only read. Its ROLLBACK (for a reader the same as a COMMIT) is queued
/// on the connection and sent when the pool takes the connection back, so the request does not
/// wait one more round trip for it.
pub fn end_read(txn: impl PinnedRead) {
    drop(txn);
}

/// A transaction [`end_read`] may end.
pub trait PinnedRead {}
impl PinnedRead for DatabaseTransaction {}
impl PinnedRead for TenantTransaction {}

/// A transaction acting for a tenant, holding its share of the pool ([`DbSlot`]) until it
/// ends. Used like the transaction itself (it is a [`ConnectionTrait`]).
pub struct TenantTransaction {
    txn: DatabaseTransaction,
    _slot: DbSlot,
}

impl TenantTransaction {
    pub fn new(txn: DatabaseTransaction, slot: DbSlot) -> Self {
        TenantTransaction { txn, _slot: slot }
    }

    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl std::ops::Deref for TenantTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for TenantTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }
}

/// Begins a transaction pinned to `schema` for tenant `tenant_id`, or `None` when the registry
/// no longer says that this tenant is active and owns that schema.
///
/// The pin is selected from the registry row, so the proof and the pin are one statement: a
/// context remembered anywhere (a socket, a DataLoader, a batch) can never reach a schema that
/// was dropped and made again for another tenant, nor a tenant deactivated since.
pub async fn begin_as_owner(
    db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
    tenant_id: Uuid,
    schema: &SchemaName,
) -> Result<Option<DatabaseTransaction>, DbErr> {
    let txn = db.begin().await?;
    let pinned = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('search_path', $1, true) FROM public.tenants \
             WHERE id = $2 AND schema_name = $3 AND status = 'ACTIVE' AND deleted_at IS NULL",
            [
                schema.quoted().into(),
                tenant_id.into(),
                schema.as_str().into(),
            ],
        ))
        .await?;
    if pinned.is_none() {
        txn.rollback().await?;
        return Ok(None);
    }
    Ok(Some(txn))
}

//! A short-lived cache of the registry and of each tenant's role → permission table, so that
//! authenticating a tenant request costs no database round trip in the common case.
//!
//! Every change the life cycle makes to a tenant evicts it here at once; other servers of a
//! deployment see changes within [`ENTRY_TTL`].

use std::{collections::HashMap, sync::Arc, time::Duration};

use entity::public::tenants;
use moka::future::Cache;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    db::pinned::{begin_in_schema, end_read},
    error::AppResult,
    primitives::schema_name::SchemaName,
    tenancy::TenantStatus,
};

/// How long a registry entry may be served from memory.
pub const ENTRY_TTL: Duration = Duration::from_secs(30);

/// What request authentication needs to know about a tenant.
#[derive(Debug, Clone)]
pub struct TenantEntry {
    pub id: Uuid,
    pub domain: String,
    pub schema: SchemaName,
    pub status: TenantStatus,
    /// Hex SHA-256 of the current API key.
    pub api_key_hash: Option<String>,
}

impl TenantEntry {
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }
}

impl From<&tenants::Model> for TenantEntry {
    fn from(tenant: &tenants::Model) -> Self {
        TenantEntry {
            id: tenant.id,
            domain: tenant.domain.clone(),
            schema: crate::tenancy::registry::schema_of(tenant),
            status: TenantStatus::from_db(&tenant.status).unwrap_or(TenantStatus::Failed),
            api_key_hash: tenant.api_key_hash.clone(),
        }
    }
}

/// Role name → permission codes of one tenant.
pub type RolePermissions = Arc<HashMap<String, Vec<String>>>;

#[derive(Clone)]
pub struct TenantDirectory {
    by_id: Cache<Uuid, Option<TenantEntry>>,
    by_api_key: Cache<String, Option<Uuid>>,
    role_permissions: Cache<Uuid, RolePermissions>,
}

impl Default for TenantDirectory {
    fn default() -> Self {
        TenantDirectory {
            by_id: short_lived_cache(),
            by_api_key: short_lived_cache(),
            role_permissions: short_lived_cache(),
        }
    }
}

fn short_lived_cache<K, V>() -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(ENTRY_TTL)
        .build()
}

impl TenantDirectory {
    /// The live tenant with this id (deleted tenants are absent).
    pub async fn tenant(
        &self,
        db: &impl ConnectionTrait,
        id: Uuid,
    ) -> AppResult<Option<TenantEntry>> {
        if let Some(entry) = self.by_id.get(&id).await {
            return Ok(entry);
        }
        let entry = tenants::Entity::find_by_id(id)
            .filter(tenants::Column::DeletedAt.is_null())
            .one(db)
            .await?
            .as_ref()
            .map(TenantEntry::from);
        self.by_id.insert(id, entry.clone()).await;
        Ok(entry)
    }

    /// The live tenant whose current API key hashes to `key_hash`.
    pub async fn tenant_by_api_key(
        &self,
        db: &impl ConnectionTrait,
        key_hash: &str,
    ) -> AppResult<Option<TenantEntry>> {
        let id = match self.by_api_key.get(key_hash).await {
            Some(id) => id,
            None => {
                let tenant = tenants::Entity::find()
                    .filter(tenants::Column::ApiKeyHash.eq(key_hash))
                    .filter(tenants::Column::DeletedAt.is_null())
                    .one(db)
                    .await?;
                let id = tenant.as_ref().map(|t| t.id);
                if let Some(tenant) = &tenant {
                    self.by_id
                        .insert(tenant.id, Some(TenantEntry::from(tenant)))
                        .await;
                }
                self.by_api_key.insert(key_hash.to_owned(), id).await;
                id
            }
        };
        let Some(id) = id else { return Ok(None) };
        // The key must still be the tenant's current one: a rotated key stops at once.
        Ok(self
            .tenant(db, id)
            .await?
            .filter(|entry| entry.api_key_hash.as_deref() == Some(key_hash)))
    }

    /// The tenant's role → permissions table, read inside its own schema.
    pub async fn role_permissions(
        &self,
        db: &impl TransactionTrait<Transaction = DatabaseTransaction>,
        tenant: &TenantEntry,
    ) -> AppResult<RolePermissions> {
        if let Some(table) = self.role_permissions.get(&tenant.id).await {
            return Ok(table);
        }
        let txn = begin_in_schema(db, &tenant.schema).await?;
        let rows = txn
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT r.name, p.code FROM roles r \
                   JOIN role_permissions rp ON rp.role_id = r.id \
                   JOIN permissions p ON p.id = rp.permission_id",
            ))
            .await?;
        end_read(txn);
        let mut table: HashMap<String, Vec<String>> = HashMap::new();
        for row in rows {
            table
                .entry(row.try_get("", "name")?)
                .or_default()
                .push(row.try_get("", "code")?);
        }
        let table = Arc::new(table);
        self.role_permissions.insert(tenant.id, table.clone()).await;
        Ok(table)
    }

    /// Forgets everything about a tenant after the life cycle changed it. API key entries are
    /// re-checked against the tenant entry, so they need no eviction of their own.
    pub async fn forget(&self, tenant_id: Uuid) {
        self.by_id.invalidate(&tenant_id).await;
        self.role_permissions.invalidate(&tenant_id).await;
    }
}

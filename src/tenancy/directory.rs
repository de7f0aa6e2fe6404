//! A short-lived cache of the registry and of each tenant's role → permission table, so that
//! authenticating a tenant request costs no database round trip in the common case.
//!
//! Every change to a tenant evicts it: here at once (the life cycle calls [`TenantDirectory::forget`]),
//! on the other servers of a deployment when they hear the change's notification (see
//! [`crate::db::notify`]). [`ENTRY_TTL`] bounds what a missed notification could leave behind,
//! and while the listener is disconnected the cache is not used at all.

use std::{
    collections::{BTreeSet, HashMap},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use entity::public::tenants;
use moka::future::Cache;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    db::{
        notify::{AccessEvent, AccessFeed},
        pinned::{begin_in_schema, end_read},
    },
    error::AppResult,
    primitives::{
        permissions::{Permission, stored_api_key_scope},
        schema_name::SchemaName,
    },
    tenancy::{TenantStatus, validation::SettingsDraft},
};

/// The longest an access-relevant state is served from memory without being read again: the
/// backstop behind notifications, well inside the two seconds within which every server of a
/// deployment must agree.
pub const ENTRY_TTL: Duration = Duration::from_millis(1500);

/// What request authentication needs to know about a tenant.
#[derive(Debug, Clone)]
pub struct TenantEntry {
    pub id: Uuid,
    pub domain: String,
    pub schema: SchemaName,
    pub status: TenantStatus,
    /// Hex SHA-256 of the current API key.
    pub api_key_hash: Option<String>,
    /// What the current API key may use (of what the tenant's admins may).
    pub api_key_scope: Vec<Permission>,
    /// The tenant's own `settings.limits.requestsPerMinute`, overriding the server's default.
    pub requests_per_minute: Option<NonZeroU32>,
    /// The database server its schema lives on; `None` is the control database.
    pub server: Option<Arc<str>>,
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
            status: tenant.status,
            api_key_hash: tenant.api_key_hash.clone(),
            api_key_scope: stored_api_key_scope(&tenant.api_key_permissions),
            requests_per_minute: SettingsDraft::from_json(&tenant.settings)
                .limits
                .and_then(|limits| limits.requests_per_minute)
                .and_then(|n| u32::try_from(n).ok())
                .and_then(NonZeroU32::new),
            server: tenant.server_name.as_deref().map(Arc::from),
        }
    }
}

/// Role name → permissions of one tenant, parsed once per load (codes this server does not
/// know are left out).
pub type RolePermissions = Arc<HashMap<String, BTreeSet<Permission>>>;

#[derive(Clone)]
pub struct TenantDirectory {
    by_id: Cache<Uuid, Option<TenantEntry>>,
    by_api_key: Cache<String, Option<Uuid>>,
    role_permissions: Cache<Uuid, RolePermissions>,
    feed: Arc<AccessFeed>,
}

/// A cache whose entries live at most [`ENTRY_TTL`].
pub fn short_lived_cache<K, V>() -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(ENTRY_TTL)
        .build()
}

/// Reads `key` from `cache`, or loads it and caches it unless an eviction raced the load or
/// the listener is away (then every read goes to the database).
pub async fn cached<K, V, F>(
    feed: &AccessFeed,
    cache: &Cache<K, V>,
    key: K,
    load: F,
) -> AppResult<V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    F: std::future::Future<Output = AppResult<V>>,
{
    if feed.is_listening()
        && let Some(value) = cache.get(&key).await
    {
        return Ok(value);
    }
    let mark = feed.mark();
    let value = load.await?;
    if feed.still_fresh(mark) {
        cache.insert(key.clone(), value.clone()).await;
        // An eviction between the check and the insert: take the insert back.
        if !feed.still_fresh(mark) {
            cache.invalidate(&key).await;
        }
    }
    Ok(value)
}

impl TenantDirectory {
    pub fn new(feed: Arc<AccessFeed>) -> Self {
        TenantDirectory {
            by_id: short_lived_cache(),
            by_api_key: short_lived_cache(),
            role_permissions: short_lived_cache(),
            feed,
        }
    }

    /// The live tenant with this id (deleted tenants are absent).
    pub async fn tenant(
        &self,
        db: &impl ConnectionTrait,
        id: Uuid,
    ) -> AppResult<Option<TenantEntry>> {
        cached(&self.feed, &self.by_id, id, async {
            Ok(tenants::Entity::find_by_id(id)
                .filter(tenants::Column::DeletedAt.is_null())
                .one(db)
                .await?
                .as_ref()
                .map(TenantEntry::from))
        })
        .await
    }

    /// The live tenant whose current API key hashes to `key_hash`.
    pub async fn tenant_by_api_key(
        &self,
        db: &impl ConnectionTrait,
        key_hash: &str,
    ) -> AppResult<Option<TenantEntry>> {
        let id = cached(&self.feed, &self.by_api_key, key_hash.to_owned(), async {
            Ok(tenants::Entity::find()
                .filter(tenants::Column::ApiKeyHash.eq(key_hash))
                .filter(tenants::Column::DeletedAt.is_null())
                .one(db)
                .await?
                .map(|tenant| tenant.id))
        })
        .await?;
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
        cached(&self.feed, &self.role_permissions, tenant.id, async {
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
            let mut table: HashMap<String, BTreeSet<Permission>> = HashMap::new();
            for row in rows {
                let permissions = table.entry(row.try_get("", "name")?).or_default();
                let code: String = row.try_get("", "code")?;
                permissions.extend(Permission::from_code(&code));
            }
            Ok(Arc::new(table))
        })
        .await
    }

    /// Forgets everything about a tenant after the life cycle changed it (and committed), and
    /// tells this server's subscribers. Other servers hear of it from the registry's trigger.
    pub async fn forget(&self, tenant_id: Uuid) {
        let event = AccessEvent::Tenant { id: tenant_id };
        self.apply(&event).await;
        self.feed.broadcast(event);
    }

    /// Evicts what `event` makes stale. API key entries are re-checked against the tenant
    /// entry, so they need no eviction of their own except when everything goes.
    pub async fn apply(&self, event: &AccessEvent) {
        match event {
            AccessEvent::Tenant { id } => {
                self.feed.evicting();
                self.by_id.invalidate(id).await;
                self.role_permissions.invalidate(id).await;
            }
            AccessEvent::Everything => {
                self.feed.evicting();
                self.by_id.invalidate_all();
                self.by_api_key.invalidate_all();
                self.role_permissions.invalidate_all();
            }
            AccessEvent::Session { .. }
            | AccessEvent::User { .. }
            | AccessEvent::Operator { .. } => {}
        }
    }
}

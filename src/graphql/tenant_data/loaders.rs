//! Batched nested look-ups (a person's creator, a user's roles), bound to one operation and its
//! tenant.
//!
//! Lists do not leave batching to timing: a page resolver hands every key of the page to the
//! loader in one call ([`TenantLoaders::prime_users`]), which runs one query and keeps the
//! answers for the rest of the operation, so the page's nested fields read them from the cache.
//! Look-ups no page primed fall back to the DataLoader's short batching delay. Loaders are made
//! anew for every operation ([`insert_loaders`]), also on a long-lived WebSocket, so
//! nothing cached outlives the operation.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Context, ErrorExtensions, Request,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use uuid::Uuid;

use crate::{
    auth::{Principal, RequestContext, tenant::TenantContext},
    db::{
        pinned::{TenantTransaction, end_read},
        statements::spawn_in_operation,
    },
    error::{AppError, AppResult},
    state::SharedState,
    tenant_data::users,
};

/// The DataLoaders of one operation acting in one tenant.
pub struct TenantLoaders {
    pub(super) users: DataLoader<UsersLoader, HashMapCache>,
    pub(super) roles: DataLoader<RolesLoader, HashMapCache>,
    /// The application's loaders, made on first use (see [`TenantLoaders::batched`]).
    batched: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    shared: Arc<(SharedState, TenantContext)>,
}

impl TenantLoaders {
    fn new(state: SharedState, tenant: TenantContext) -> Self {
        let shared = Arc::new((state, tenant));
        TenantLoaders {
            batched: Mutex::default(),
            shared: shared.clone(),
            users: DataLoader::with_cache(
                UsersLoader(shared.clone()),
                spawn_in_operation,
                HashMapCache::default(),
            ),
            roles: DataLoader::with_cache(
                RolesLoader(shared.clone()),
                spawn_in_operation,
                HashMapCache::default(),
            ),
        }
    }

    /// Loads the users of a whole page in one batch (and their roles in one more when
    /// `with_roles`), so that the page's nested fields cost no further queries.
    pub(super) async fn prime_users(
        &self,
        ids: impl IntoIterator<Item = Uuid>,
        with_roles: bool,
    ) -> async_graphql::Result<()> {
        let ids: Vec<Uuid> = ids.into_iter().collect();
        let roles = async {
            if with_roles {
                self.roles.load_many(ids.iter().copied()).await?;
            }
            Ok(())
        };
        let users = async { self.users.load_many(ids.iter().copied()).await.map(drop) };
        futures_util::future::try_join(users, roles)
            .await
            .map_err(batch_error)?;
        Ok(())
    }

    /// The operation's DataLoader of the application's batch look-up `B`, made on first use.
    pub(crate) fn batched<B: TenantBatch>(&self) -> Arc<TenantDataLoader<B>> {
        let mut made = self.batched.lock().expect("never poisoned");
        let loader = made.entry(TypeId::of::<B>()).or_insert_with(|| {
            Arc::new(DataLoader::with_cache(
                BatchLoader {
                    batch: B::default(),
                    shared: self.shared.clone(),
                },
                spawn_in_operation,
                HashMapCache::default(),
            )) as Arc<dyn Any + Send + Sync>
        });
        loader.clone().downcast().expect("made for this type id")
    }

    /// Forgets what the operation loaded, after a mutation changed users or their roles.
    pub(super) fn forget(&self) {
        self.users.clear::<Uuid>();
        self.roles.clear::<Uuid>();
    }
}

/// Users (with their status) by id.
pub struct UsersLoader(Arc<(SharedState, TenantContext)>);

/// Role names by user id.
pub struct RolesLoader(Arc<(SharedState, TenantContext)>);

impl Loader<Uuid> for UsersLoader {
    type Value = users::User;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, users::User>, Self::Error> {
        let (state, tenant) = &*self.0;
        Ok(users::by_ids(state, tenant, keys)
            .await?
            .into_iter()
            .map(|user| (user.model.id, user))
            .collect())
    }
}

impl Loader<Uuid> for RolesLoader {
    type Value = Vec<String>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<String>>, Self::Error> {
        let (state, tenant) = &*self.0;
        let mut roles = users::roles_of(state, tenant, keys).await?;
        // A user without roles is an answer too: cached as such, not asked again.
        for key in keys {
            roles.entry(*key).or_default();
        }
        Ok(roles)
    }
}

/// A batch look-up in the caller's tenant, for [`crate::app::TenantData::load_one`]
/// and [`crate::app::TenantData::load_many`]: `load` gets the keys of
/// one batch and a transaction pinned to the tenant's schema.
///
/// ```
/// use std::collections::HashMap;
///
/// use tenantgraph::app::{TenantBatch, TenantTransaction};
/// use tenantgraph::entity::tenant::person;
/// use tenantgraph::error::AppResult;
/// use tenantgraph::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
/// use uuid::Uuid;
///
/// #[derive(Default)]
/// struct PeopleById;
///
/// impl TenantBatch for PeopleById {
///     type Key = Uuid;
///     type Value = person::Model;
///
///     async fn load(
///         &self,
///         txn: &TenantTransaction,
///         keys: &[Uuid],
///     ) -> AppResult<HashMap<Uuid, person::Model>> {
///         let found = person::Entity::find()
///             .filter(person::Column::Id.is_in(keys.iter().copied()))
///             .all(txn)
///             .await?;
///         Ok(found.into_iter().map(|p| (p.id, p)).collect())
///     }
/// }
/// ```
pub trait TenantBatch: Default + Send + Sync + 'static {
    type Key: Send + Sync + Hash + Eq + Clone + 'static;
    type Value: Send + Sync + Clone + 'static;

    /// The values of the `keys` that exist; a missing key loads as `None`.
    fn load(
        &self,
        txn: &TenantTransaction,
        keys: &[Self::Key],
    ) -> impl Future<Output = AppResult<HashMap<Self::Key, Self::Value>>> + Send;
}

/// A DataLoader of the application's batch look-up `B`, for one operation in one tenant.
pub(crate) type TenantDataLoader<B> = DataLoader<BatchLoader<B>, HashMapCache>;

/// Runs an application's [`TenantBatch`] in the operation's tenant, in a pinned transaction
/// of its own.
pub(crate) struct BatchLoader<B> {
    batch: B,
    shared: Arc<(SharedState, TenantContext)>,
}

impl<B: TenantBatch> Loader<B::Key> for BatchLoader<B> {
    type Value = B::Value;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[B::Key]) -> Result<HashMap<B::Key, B::Value>, Self::Error> {
        let (state, tenant) = &*self.shared;
        let txn = tenant.begin(state).await?;
        let found = self.batch.load(&txn, keys).await?;
        end_read(txn);
        Ok(found)
    }
}

/// Gives an operation of a tenant principal its own [`TenantLoaders`].
pub fn insert_loaders(state: &SharedState, request: &mut Request) {
    let context = request
        .data
        .get(&std::any::TypeId::of::<RequestContext>())
        .and_then(|data| data.downcast_ref::<RequestContext>());
    if let Some(RequestContext {
        principal: Principal::Tenant(tenant),
        ..
    }) = context
    {
        let loaders = TenantLoaders::new(state.clone(), tenant.clone());
        request.data.insert(loaders);
    }
}

/// The operation's loaders; only tenant principals have them.
pub(crate) fn loaders<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a TenantLoaders> {
    ctx.data_opt::<TenantLoaders>().ok_or_else(|| {
        AppError::forbidden("tenant data needs a tenant user's token or the tenant's API key")
            .into()
    })
}

/// A batch's error, shared by every field that waited on the batch, with its own code.
pub(crate) fn batch_error(err: Arc<AppError>) -> async_graphql::Error {
    err.extend()
}

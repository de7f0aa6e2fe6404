//! Batched nested look-ups (a person's creator, a user's roles), bound to one operation and its
//! tenant.
//!
//! Lists do not leave batching to timing: a page resolver hands every key of the page to the
//! loader in one call ([`TenantLoaders::prime_users`]), which runs one query and keeps the
//! answers for the rest of the operation, so the page's nested fields read them from the cache.
//! Look-ups no page primed fall back to the DataLoader's short batching delay. Loaders are made
//! anew for every operation ([`insert_loaders`]), also on a long-lived WebSocket, so
//! nothing cached outlives the operation.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Context, ErrorExtensions, Request,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use uuid::Uuid;

use crate::{
    auth::{Principal, RequestContext, tenant::TenantContext},
    db::statements::spawn_in_operation,
    error::AppError,
    state::SharedState,
    tenant_data::users,
};

/// The DataLoaders of one operation acting in one tenant.
pub struct TenantLoaders {
    pub(super) users: DataLoader<UsersLoader, HashMapCache>,
    pub(super) roles: DataLoader<RolesLoader, HashMapCache>,
}

impl TenantLoaders {
    fn new(state: SharedState, tenant: TenantContext) -> Self {
        let shared = Arc::new((state, tenant));
        TenantLoaders {
            users: DataLoader::with_cache(
                UsersLoader(shared.clone()),
                spawn_in_operation,
                HashMapCache::default(),
            ),
            roles: DataLoader::with_cache(
                RolesLoader(shared),
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
pub(super) fn loaders<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a TenantLoaders> {
    ctx.data_opt::<TenantLoaders>().ok_or_else(|| {
        AppError::forbidden("tenant data needs a tenant user's token or the tenant's API key")
            .into()
    })
}

/// A batch's error, shared by every field that waited on the batch, with its own code.
pub(super) fn batch_error(err: Arc<AppError>) -> async_graphql::Error {
    err.extend()
}

//! Per-request batching of nested look-ups, bound to the request's tenant: each batch is one
//! pinned transaction running one query, whatever the page size.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Context, ErrorExtensions,
    dataloader::{DataLoader, Loader},
};
use uuid::Uuid;

use crate::{auth::tenant::TenantContext, error::AppError, state::SharedState, tenant_data::users};

/// The DataLoaders of one operation acting in one tenant (see
/// [`operation_data`](crate::graphql::operation_data)). They cache nothing: a batch lives as
/// long as one round of resolvers.
pub struct TenantLoaders {
    pub(super) users: DataLoader<UsersLoader>,
    pub(super) roles: DataLoader<RolesLoader>,
}

impl TenantLoaders {
    pub fn new(state: SharedState, tenant: TenantContext) -> Self {
        let shared = Arc::new((state, tenant));
        TenantLoaders {
            users: DataLoader::new(UsersLoader(shared.clone()), tokio::spawn),
            roles: DataLoader::new(RolesLoader(shared), tokio::spawn),
        }
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
        Ok(users::roles_of(state, tenant, keys).await?)
    }
}

/// The request's loaders; only tenant principals have them.
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

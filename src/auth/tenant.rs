//! The tenant side of a request: who acts inside which tenant, with which permissions, and the
//! only door to that tenant's data.
//!
//! A [`TenantContext`] is built once per request from a verified token (held against its
//! session and the user's current state) or API key, and the registry. Tenant data is reachable
//! only through [`TenantContext::begin`], which pins a transaction to the tenant's schema, and
//! [`TenantContext::read`], one statement naming the tenant's table with the same ownership check
//! in it; the pool itself has no tenant schema on its search path, so a query that does neither
//! fails instead of reaching anybody's data.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use sea_orm::{DbErr, EntityTrait, FromQueryResult, Select};
use uuid::Uuid;

use crate::{
    auth::{SessionRef, access, jwt::Claims},
    db::{
        pinned::{TenantRow, TenantTransaction, begin_as_owner, read_as_owner},
        pool::Pool,
        share::DbSlots,
    },
    error::{AppError, AppResult},
    primitives::api_keys,
    state::AppState,
    tenancy::directory::TenantEntry,
};

pub use crate::primitives::permissions::Permission;

/// Who acts inside the tenant.
#[derive(Debug, Clone)]
pub enum TenantActor {
    /// A user in a session; `roles` are the user's roles as they are now.
    User {
        id: Uuid,
        roles: Vec<String>,
        session: SessionRef,
    },
    /// The tenant's service key, identified by its display prefix.
    ApiKey { prefix: String },
}

/// The role an API key acts with, within its scope: the tenant's service credential, shown once
/// to the operator who created or rotated it.
pub const API_KEY_ROLE: &str = "admin";

/// A request acting inside one tenant.
#[derive(Debug, Clone)]
pub struct TenantContext {
    pub tenant: TenantEntry,
    pub actor: TenantActor,
    permissions: BTreeSet<Permission>,
    /// This request's share of the pool.
    slots: DbSlots,
}

impl TenantContext {
    /// Fails with `FORBIDDEN` unless the principal holds `permission`.
    pub fn require(&self, permission: Permission) -> AppResult<()> {
        if self.permissions.contains(&permission) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "this needs the {permission} permission"
            )))
        }
    }

    pub fn permissions(&self) -> impl Iterator<Item = Permission> + '_ {
        self.permissions.iter().copied()
    }

    /// The acting user's id, when a user (not a key) acts.
    pub fn user_id(&self) -> Option<Uuid> {
        match &self.actor {
            TenantActor::User { id, .. } => Some(*id),
            TenantActor::ApiKey { .. } => None,
        }
    }

    /// The session a user acts in; API keys have none.
    pub fn session(&self) -> Option<&SessionRef> {
        match &self.actor {
            TenantActor::User { session, .. } => Some(session),
            TenantActor::ApiKey { .. } => None,
        }
    }

    /// A transaction pinned to this tenant's schema. Refused when the tenant is no longer active
    /// or no longer owns the schema it was authenticated with.
    ///
    /// The transaction holds one of the request's and one of the tenant's database slots (see
    /// [`crate::db::share`]) until it ends; waiting too long for them is `RATE_LIMITED`.
    ///
    /// It runs on the tenant's database server; a server that cannot be reached is
    /// `SERVER_UNAVAILABLE` for its tenants only. A pin refused on a data server while the
    /// registry still has the tenant active with this schema is a move's write pause or its
    /// switch: the request is held until the registry names the server to go to (at most
    /// [`MOVE_HOLD`], then `SERVER_UNAVAILABLE`), and pinned there — with the same ownership
    /// check, on the tenant's id and schema from the credential. [`read`](Self::read) does the
    /// same.
    pub async fn begin(&self, state: &AppState) -> AppResult<TenantTransaction> {
        let slot = self.slots.acquire().await?;
        let txn = self
            .as_owner(state, |db| async move {
                begin_as_owner(&db, self.tenant.id, &self.tenant.schema).await
            })
            .await?;
        Ok(TenantTransaction::new(txn, slot))
    }

    /// Reads one table of the tenant's in one statement and one round trip, with the same
    /// ownership check as [`begin`](Self::begin) in it (see [`read_as_owner`]). Reads of more
    /// than one table, or more than one statement that must agree, go through `begin`.
    pub async fn read<E: EntityTrait>(
        &self,
        state: &AppState,
        select: Select<E>,
    ) -> AppResult<Vec<E::Model>> {
        let rows = self.read_rows(state, select).await?;
        Ok(rows
            .into_iter()
            .map(|row| E::Model::from_query_result(&row.into_query_result()?, ""))
            .collect::<Result<_, _>>()?)
    }

    /// [`read`](Self::read), for a select of chosen columns: the rows as they come.
    pub async fn read_rows<E: EntityTrait>(
        &self,
        state: &AppState,
        select: Select<E>,
    ) -> AppResult<Vec<TenantRow>> {
        let _slot = self.slots.acquire().await?;
        self.as_owner(state, |db| {
            let select = select.clone();
            async move { read_as_owner(&db, self.tenant.id, &self.tenant.schema, select).await }
        })
        .await
    }

    /// Runs `attempt` (a pin or a gated read, `None` when the ownership check refused it) on
    /// the tenant's database server, following the tenant when a move switches servers.
    async fn as_owner<T, Attempt>(
        &self,
        state: &AppState,
        attempt: impl Fn(Pool) -> Attempt,
    ) -> AppResult<T>
    where
        Attempt: Future<Output = Result<Option<T>, DbErr>>,
    {
        let held_until = Instant::now() + MOVE_HOLD;
        let mut server = self.tenant.server.clone();
        loop {
            let db = state.servers.pool(server.as_deref()).await?;
            let owned = attempt(db)
                .await
                .map_err(|err| state.servers.failed(server.as_deref(), err))?;
            if let Some(owned) = owned {
                return Ok(owned);
            }
            // On the control database the registry itself refused: no move is under way there.
            if server.is_none() {
                return Err(no_longer_active());
            }
            let now = state
                .directory
                .tenant(&state.db, self.tenant.id)
                .await?
                .filter(|now| now.is_active() && now.schema == self.tenant.schema)
                .ok_or_else(no_longer_active)?;
            if now.server != server {
                server = now.server;
                continue;
            }
            if Instant::now() >= held_until {
                return Err(AppError::ServerUnavailable(
                    "the tenant is being moved to another database server; try again".into(),
                ));
            }
            tokio::time::sleep(MOVE_HOLD_POLL).await;
        }
    }
}

/// The longest a request waits for a tenant's move to switch servers.
pub const MOVE_HOLD: Duration = Duration::from_secs(10);
/// How often a held request looks at the registry again (the switch evicts its cached entry).
const MOVE_HOLD_POLL: Duration = Duration::from_millis(20);

fn no_longer_active() -> AppError {
    AppError::Unauthenticated("this credential's tenant is no longer active".into())
}

fn invalid_token() -> AppError {
    AppError::Unauthenticated("invalid or expired token".into())
}

/// Builds the context of a verified tenant-user token: the tenant must still be active and be
/// the one the token names, by id and schema (so a tenant deleted and created again is another
/// tenant); the session must be live, its user `active` with the password the session began
/// with; the permissions are those of the user's current roles.
pub async fn from_claims(state: &AppState, claims: &Claims) -> AppResult<TenantContext> {
    let (Some(tenant_id), Some(schema)) = (claims.tid, claims.schema.as_deref()) else {
        return Err(invalid_token());
    };
    let tenant = state
        .directory
        .tenant(&state.db, tenant_id)
        .await?
        .filter(|tenant| tenant.is_active() && tenant.schema.as_str() == schema)
        .ok_or_else(invalid_token)?;
    let user = access::current_tenant_user(state, &tenant, claims.sid, claims.sub)
        .await?
        .ok_or_else(invalid_token)?;
    let permissions = permissions_of(state, &tenant, &user.roles).await?;
    Ok(TenantContext {
        actor: TenantActor::User {
            id: user.id,
            roles: user.roles,
            session: SessionRef {
                id: claims.sid,
                expires_at: claims.exp,
            },
        },
        slots: state.db_shares.for_request(tenant.id),
        tenant,
        permissions,
    })
}

/// Builds the context of an `X-API-Key`: the key must be the current one of an active tenant.
pub async fn from_api_key(state: &AppState, key: &str) -> AppResult<TenantContext> {
    let invalid_key = || AppError::Unauthenticated("invalid API key".into());
    if !key.starts_with(&state.config.api_key_prefix) || key.len() > 200 {
        return Err(invalid_key());
    }
    let tenant = state
        .directory
        .tenant_by_api_key(&state.db, &api_keys::hash(key))
        .await?
        .filter(|tenant| tenant.is_active())
        .ok_or_else(invalid_key)?;
    // What the tenant's admins may do, and of that only what the key's scope names.
    let mut permissions = permissions_of(state, &tenant, &[API_KEY_ROLE.to_owned()]).await?;
    permissions.retain(|permission| tenant.api_key_scope.contains(permission));
    Ok(TenantContext {
        actor: TenantActor::ApiKey {
            prefix: key[..key.len().min(state.config.api_key_prefix.len() + 8)].to_owned(),
        },
        slots: state.db_shares.for_request(tenant.id),
        tenant,
        permissions,
    })
}

async fn permissions_of(
    state: &AppState,
    tenant: &TenantEntry,
    roles: &[String],
) -> AppResult<BTreeSet<Permission>> {
    let server = tenant.server.as_deref();
    let db = state.servers.pool(server).await?;
    let table = state
        .directory
        .role_permissions(&db, tenant)
        .await
        .map_err(|err| state.servers.failed(server, err))?;
    Ok(roles
        .iter()
        .filter_map(|role| table.get(role))
        .flatten()
        .copied()
        .collect())
}

//! `login`, `me`, and sessions: `refreshToken`, `logout`, `revokeSessions`,
//! `revokeTenantSessions`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;

use crate::{
    audit::Actor,
    auth::{
        Principal, operators,
        sessions::{self, ClientInfo, SessionTokens},
        tenant::{Permission, TenantActor},
        tenant_login,
    },
    error::AppError,
    graphql::{ContextExt, parse_id, tenants::Tenant},
    tenancy::registry,
};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ViewerKind {
    Platform,
    TenantUser,
    ApiKey,
}

#[derive(SimpleObject, Debug)]
pub struct ViewerUser {
    pub id: ID,
    pub email: String,
    pub roles: Vec<String>,
}

/// Who the caller is.
#[derive(SimpleObject)]
pub struct Viewer {
    pub kind: ViewerKind,
    /// Absent for API keys, which act for a tenant, not a person.
    pub user: Option<ViewerUser>,
    /// The caller's tenant; absent for platform operators.
    pub tenant: Option<Tenant>,
}

#[derive(InputObject)]
pub struct LoginInput {
    pub email: String,
    #[graphql(secret)]
    pub password: String,
    /// The tenant's domain or schema name; omit it for a platform login.
    pub tenant: Option<String>,
}

/// A session's tokens and whom they are for.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// The access token (a short-lived JWT naming its session): `Authorization: Bearer <token>`.
    pub token: String,
    /// When `token` expires; get a new one with `refreshToken` before then.
    pub expires_at: DateTime<Utc>,
    /// Exchanged once for a new pair with `refreshToken`; a used one presented again ends the
    /// session.
    pub refresh_token: String,
    pub user: ViewerUser,
    pub tenant: Option<Tenant>,
}

impl AuthPayload {
    fn new(tokens: SessionTokens, user: ViewerUser, tenant: Option<Tenant>) -> Self {
        AuthPayload {
            expires_at: expiry(tokens.access.claims.exp),
            token: tokens.access.token,
            refresh_token: tokens.refresh_token,
            user,
            tenant,
        }
    }
}

const PLATFORM_ROLE: &str = "platform_admin";

#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// Who the caller is, from its verified token or key.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Viewer> {
        match &ctx.request().principal {
            Principal::Platform(operator) => Ok(Viewer {
                kind: ViewerKind::Platform,
                user: Some(platform_user(operator.id, operator.email.clone())),
                tenant: None,
            }),
            Principal::Tenant(context) => {
                let state = ctx.state();
                let tenant = registry::find_live(&state.db, context.tenant.id).await?;
                let user = match (&context.actor, context.user_id()) {
                    (TenantActor::User { .. }, Some(user_id)) => {
                        let (email, roles) = tenant_login::describe_user(state, context, user_id)
                            .await?
                            .ok_or_else(AppError::unauthenticated)?;
                        Some(ViewerUser {
                            id: ID(user_id.to_string()),
                            email,
                            roles,
                        })
                    }
                    _ => None,
                };
                Ok(Viewer {
                    kind: match context.actor {
                        TenantActor::User { .. } => ViewerKind::TenantUser,
                        TenantActor::ApiKey { .. } => ViewerKind::ApiKey,
                    },
                    user,
                    tenant: Some(Tenant(tenant)),
                })
            }
            Principal::Anonymous => Err(AppError::unauthenticated().into()),
        }
    }
}

#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Exchanges an email and password for a session: an access token and a refresh token.
    /// Without `tenant` this is a platform operator login.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.state();
        let request = ctx.request();
        let password = SecretString::from(input.password);
        if let Some(tenant) = input.tenant {
            let logged_in = tenant_login::login(
                state,
                &tenant,
                &input.email,
                password,
                request.client_addr,
                request.user_agent.as_deref(),
            )
            .await?;
            return Ok(AuthPayload::new(
                logged_in.tokens,
                ViewerUser {
                    id: ID(logged_in.user_id.to_string()),
                    email: logged_in.email,
                    roles: logged_in.roles,
                },
                Some(Tenant(logged_in.tenant)),
            ));
        }
        let (tokens, operator) = operators::login(
            state,
            &input.email,
            password,
            request.client_addr,
            request.user_agent.as_deref(),
        )
        .await?;
        Ok(AuthPayload::new(
            tokens,
            platform_user(operator.id, operator.email),
            None,
        ))
    }

    /// Exchanges a refresh token for a new access token and a new refresh token. Each refresh
    /// token works once; presenting a used one again ends its session.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(secret)] refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let refreshed = sessions::refresh(
            ctx.state(),
            &refresh_token,
            &ClientInfo::from(ctx.request()),
        )
        .await?;
        let user = match &refreshed.tenant {
            None => platform_user(refreshed.user_id, refreshed.email),
            Some(_) => ViewerUser {
                id: ID(refreshed.user_id.to_string()),
                email: refreshed.email,
                roles: refreshed.roles,
            },
        };
        Ok(AuthPayload::new(
            refreshed.tokens,
            user,
            refreshed.tenant.map(Tenant),
        ))
    }

    /// Ends the caller's session: its access and refresh tokens stop working at once.
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        sessions::logout(ctx.state(), ctx.request()).await?;
        Ok(true)
    }

    /// Ends every session of a user of the caller's tenant (`users:write`); returns how many
    /// were live.
    async fn revoke_sessions(&self, ctx: &Context<'_>, user_id: ID) -> async_graphql::Result<i32> {
        let request = ctx.request();
        let tenant = request.require_tenant(Permission::UsersWrite)?;
        let user_id = parse_id("userId", &user_id)?;
        let ended = sessions::revoke_user_sessions(ctx.state(), request, tenant, user_id).await?;
        Ok(count(ended))
    }

    /// Ends every session of every user of a tenant (platform operators); returns how many were
    /// live. The tenant stays active: its users can log in again.
    async fn revoke_tenant_sessions(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
    ) -> async_graphql::Result<i32> {
        let request = ctx.request();
        request.require_platform()?;
        let tenant_id = parse_id("tenantId", &tenant_id)?;
        let ended =
            sessions::revoke_tenant_sessions(ctx.state(), &Actor::from(request), tenant_id).await?;
        Ok(count(ended))
    }
}

fn platform_user(id: uuid::Uuid, email: String) -> ViewerUser {
    ViewerUser {
        id: ID(id.to_string()),
        email,
        roles: vec![PLATFORM_ROLE.to_owned()],
    }
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn expiry(exp: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(exp, 0).single().unwrap_or_else(Utc::now)
}

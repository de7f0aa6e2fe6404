//! `login` and `me`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;

use crate::{
    auth::{Principal, operators, tenant::TenantActor, tenant_login},
    error::AppError,
    graphql::{ContextExt, tenants::Tenant},
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

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: ViewerUser,
    pub tenant: Option<Tenant>,
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
                user: Some(ViewerUser {
                    id: ID(operator.id.to_string()),
                    email: operator.email.clone(),
                    roles: vec![PLATFORM_ROLE.to_owned()],
                }),
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
    /// Exchanges an email and password for a token. Without `tenant` this is a platform
    /// operator login.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.state();
        let password = SecretString::from(input.password);
        if let Some(tenant) = input.tenant {
            let logged_in = tenant_login::login(
                state,
                &tenant,
                &input.email,
                password,
                ctx.request().client_addr,
            )
            .await?;
            return Ok(AuthPayload {
                expires_at: expiry(logged_in.token.claims.exp),
                token: logged_in.token.token,
                user: ViewerUser {
                    id: ID(logged_in.user_id.to_string()),
                    email: logged_in.email,
                    roles: logged_in.roles,
                },
                tenant: Some(Tenant(logged_in.tenant)),
            });
        }
        let (issued, operator) =
            operators::login(state, &input.email, password, ctx.request().client_addr).await?;
        Ok(AuthPayload {
            token: issued.token,
            expires_at: expiry(issued.claims.exp),
            user: ViewerUser {
                id: ID(operator.id.to_string()),
                email: operator.email,
                roles: vec![PLATFORM_ROLE.to_owned()],
            },
            tenant: None,
        })
    }
}

fn expiry(exp: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(exp, 0).single().unwrap_or_else(Utc::now)
}

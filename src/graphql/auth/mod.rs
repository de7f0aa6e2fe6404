//! `login` and `me`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;

use crate::{
    auth::{Principal, operators},
    error::AppError,
    graphql::{ContextExt, tenants::Tenant},
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
        if input.tenant.is_some() {
            return Err(AppError::bad_input(
                "tenant",
                "tenant logins are not enabled on this server",
            )
            .into());
        }
        let (issued, operator) = operators::login(state, &input.email, password).await?;
        Ok(AuthPayload {
            token: issued.token,
            expires_at: Utc
                .timestamp_opt(issued.claims.exp, 0)
                .single()
                .unwrap_or_else(Utc::now),
            user: ViewerUser {
                id: ID(operator.id.to_string()),
                email: operator.email,
                roles: vec![PLATFORM_ROLE.to_owned()],
            },
            tenant: None,
        })
    }
}

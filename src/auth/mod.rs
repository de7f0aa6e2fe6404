//! Who is calling: tokens, sessions, passwords, platform operators, and the principal of a
//! request, held against current state on every request.

pub mod access;
pub mod jwt;
pub mod listener;
pub mod operators;
pub mod password;
pub mod rate_limit;
pub mod sessions;
pub mod tenant;
pub mod tenant_login;
pub mod throttle;

use std::net::IpAddr;

use axum::http::HeaderMap;
use uuid::Uuid;

use crate::{
    audit::Actor,
    db::notify::AccessEvent,
    error::{AppError, AppResult},
    state::AppState,
};

/// The verified identity behind a request, decided once at the edge.
#[derive(Debug, Clone)]
pub enum Principal {
    Anonymous,
    Platform(PlatformOperator),
    /// A tenant user's token or a tenant API key.
    Tenant(tenant::TenantContext),
}

impl Principal {
    /// The session behind the principal; API keys and anonymous callers have none.
    pub fn session(&self) -> Option<&SessionRef> {
        match self {
            Principal::Platform(operator) => Some(&operator.session),
            Principal::Tenant(context) => context.session(),
            Principal::Anonymous => None,
        }
    }

    /// When the principal's access token expires (Unix seconds); `None` for API keys and
    /// anonymous callers.
    pub fn expires_at(&self) -> Option<i64> {
        self.session().map(|session| session.expires_at)
    }

    /// Whether `event` may have ended or narrowed this principal's access, so that it must be
    /// checked again ([`reauthenticate`]) before it is trusted further.
    pub fn is_affected_by(&self, event: &AccessEvent) -> bool {
        match (self, event) {
            (Principal::Anonymous, _) => false,
            (_, AccessEvent::Everything) => true,
            (principal, AccessEvent::Session { id, .. }) => {
                principal.session().is_some_and(|session| session.id == *id)
            }
            (Principal::Platform(operator), AccessEvent::Operator { id }) => operator.id == *id,
            (Principal::Tenant(context), AccessEvent::Tenant { id }) => context.tenant.id == *id,
            (Principal::Tenant(context), AccessEvent::User { tenant, id }) => {
                context.tenant.id == *tenant && context.user_id() == Some(*id)
            }
            (Principal::Platform(_), _) | (Principal::Tenant(_), AccessEvent::Operator { .. }) => {
                false
            }
        }
    }

    /// Names the tenant the principal acts in on `span`, which declares `tenant_id` and `schema`
    /// (as `tracing::field::Empty`), so that every log line of the request says which tenant.
    pub fn record_tenant(&self, span: &tracing::Span) {
        if let Principal::Tenant(context) = self {
            span.record("tenant_id", tracing::field::display(context.tenant.id));
            span.record("schema", context.tenant.schema.as_str());
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlatformOperator {
    pub id: Uuid,
    pub email: String,
    pub session: SessionRef,
}

/// The session an access token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    pub id: Uuid,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
}

/// What resolvers know about the request besides its arguments.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub principal: Principal,
    pub client_addr: Option<IpAddr>,
    /// The `User-Agent` header, which sessions record.
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// The platform operator behind the request; tenant credentials never reach platform
    /// operations.
    pub fn require_platform(&self) -> AppResult<&PlatformOperator> {
        match &self.principal {
            Principal::Platform(operator) => Ok(operator),
            Principal::Tenant(_) => Err(AppError::forbidden("platform operators only")),
            Principal::Anonymous => Err(AppError::unauthenticated()),
        }
    }

    /// The tenant the request acts in, holding `permission`; platform tokens never reach
    /// tenant data.
    pub fn require_tenant(
        &self,
        permission: tenant::Permission,
    ) -> AppResult<&tenant::TenantContext> {
        match &self.principal {
            Principal::Tenant(context) => {
                context.require(permission)?;
                Ok(context)
            }
            Principal::Platform(_) => Err(AppError::forbidden(
                "tenant data needs a tenant user's token or the tenant's API key",
            )),
            Principal::Anonymous => Err(AppError::unauthenticated()),
        }
    }
}

impl From<&RequestContext> for Actor {
    fn from(request: &RequestContext) -> Self {
        let (kind, id) = match &request.principal {
            Principal::Anonymous => ("ANONYMOUS", None),
            Principal::Platform(operator) => ("PLATFORM", Some(operator.id.to_string())),
            Principal::Tenant(context) => match &context.actor {
                tenant::TenantActor::User { id, .. } => ("TENANT_USER", Some(id.to_string())),
                tenant::TenantActor::ApiKey { prefix } => ("API_KEY", Some(prefix.clone())),
            },
        };
        Actor {
            kind,
            id,
            client_addr: request.client_addr.map(|addr| addr.to_string()),
        }
    }
}

/// The credentials a request presents.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    pub bearer: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

pub const API_KEY_HEADER: &str = "x-api-key";

impl<'a> Credentials<'a> {
    /// Reads `Authorization: Bearer` and `X-API-Key` from HTTP headers.
    pub fn from_headers(headers: &'a HeaderMap) -> AppResult<Self> {
        let api_key = match headers.get(API_KEY_HEADER) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| AppError::Unauthenticated("invalid API key".into()))?,
            ),
        };
        Ok(Credentials {
            bearer: bearer_token(headers)?,
            api_key,
        })
    }
}

/// Credentials kept for checking again later (a WebSocket's, from its `connection_init`).
#[derive(Clone, Default)]
pub struct StoredCredentials {
    bearer: Option<String>,
    api_key: Option<String>,
}

impl From<Credentials<'_>> for StoredCredentials {
    fn from(credentials: Credentials<'_>) -> Self {
        StoredCredentials {
            bearer: credentials.bearer.map(str::to_owned),
            api_key: credentials.api_key.map(str::to_owned),
        }
    }
}

impl StoredCredentials {
    pub fn credentials(&self) -> Credentials<'_> {
        Credentials {
            bearer: self.bearer.as_deref(),
            api_key: self.api_key.as_deref(),
        }
    }
}

impl std::fmt::Debug for StoredCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<hidden>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Checks stored credentials against current state, exactly as an HTTP request's are: an ended
/// session, a suspended user, a tenant turned off, an expired token all fail here.
pub async fn reauthenticate(state: &AppState, stored: &StoredCredentials) -> AppResult<Principal> {
    authenticate(state, stored.credentials()).await
}

/// Reads `Authorization: Bearer <jwt>` from HTTP headers.
pub fn bearer_token(headers: &HeaderMap) -> AppResult<Option<&str>> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    parse_bearer(value.to_str().ok()).map(Some)
}

/// Accepts `Bearer <token>` (scheme case-insensitive) and nothing else.
pub fn parse_bearer(value: Option<&str>) -> AppResult<&str> {
    value
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
        .map(|(_, token)| token.trim())
        .ok_or_else(|| AppError::Unauthenticated("malformed Authorization header".into()))
}

/// Turns the request's credentials into its principal: a present but bad credential is an
/// error, never a silent downgrade to anonymous.
pub async fn authenticate(state: &AppState, credentials: Credentials<'_>) -> AppResult<Principal> {
    let principal = match credentials {
        Credentials {
            bearer: Some(_),
            api_key: Some(_),
        } => {
            return Err(AppError::Unauthenticated(
                "send either a bearer token or an API key, not both".into(),
            ));
        }
        Credentials {
            bearer: None,
            api_key: None,
        } => return Ok(Principal::Anonymous),
        Credentials {
            api_key: Some(key), ..
        } => Principal::Tenant(tenant::from_api_key(state, key).await?),
        Credentials {
            bearer: Some(token),
            ..
        } => {
            let claims = state.jwt.verify(token)?;
            match claims.kind {
                jwt::TokenKind::Platform => {
                    // Read on every request: the session must be live and the operator still
                    // active with the same password, whoever changed them and however.
                    let email = sessions::current_operator(&state.db, claims.sid, claims.sub)
                        .await?
                        .ok_or_else(|| {
                            AppError::Unauthenticated("invalid or expired token".into())
                        })?;
                    access::touch(state, claims.sid).await;
                    Principal::Platform(PlatformOperator {
                        id: claims.sub,
                        email,
                        session: SessionRef {
                            id: claims.sid,
                            expires_at: claims.exp,
                        },
                    })
                }
                jwt::TokenKind::TenantUser => {
                    Principal::Tenant(tenant::from_claims(state, &claims).await?)
                }
            }
        }
    };
    if let Principal::Tenant(context) = &principal {
        state.activity.touch(&state.db, context.tenant.id).await;
    }
    Ok(principal)
}

/// A random string of ASCII letters and digits from a CSPRNG (about 5.95 bits per character).
pub fn random_token(len: usize) -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

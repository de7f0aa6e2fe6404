//! Sessions (`public.sessions`): every login opens one; its refresh tokens continue it one use
//! at a time; logout, revocation and a refresh token presented twice end it.
//!
//! - An access token (a short-lived JWT) names its session in `sid`; the server holds the
//!   session, the user and the tenant against current state on every request
//!   ([`crate::auth::access`]).
//! - A refresh token (`rt_…`, see [`crate::primitives::refresh_tokens`]) is stored as a hash
//!   and works once: exchanging it marks it used with a conditional update, so of two
//!   concurrent exchanges exactly one wins, and the new pair is handed out only after the
//!   transaction committed. Presenting a used token again ends the whole session (reuse
//!   detection, as OAuth 2.0 refresh-token rotation has it).
//! - Every session event (login, refresh, reuse detected, logout, revocation) is audited with
//!   actor, tenant and client address, in the transaction that makes it.

use std::net::IpAddr;

use entity::public::tenants;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, QueryResult, Statement,
    TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Outcome},
    auth::{
        RequestContext, access,
        jwt::{IssuedToken, TokenKind},
        tenant::TenantContext,
    },
    db::{notify::AccessEvent, servers::CONTROL_SERVER},
    error::{AppError, AppResult, code_of},
    primitives::{refresh_tokens, schema_name::SchemaName},
    state::AppState,
    tenancy::{TenantStatus, admin::end_tenant_sessions, registry},
};

const PLATFORM: &str = "platform";
const TENANT: &str = "tenant";

/// Longest user agent kept with a session.
const MAX_USER_AGENT_CHARS: usize = 512;

/// Where a request comes from, as its session records it.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub addr: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl From<&RequestContext> for ClientInfo {
    fn from(request: &RequestContext) -> Self {
        ClientInfo {
            addr: request.client_addr,
            user_agent: request.user_agent.clone(),
        }
    }
}

impl ClientInfo {
    fn addr_text(&self) -> Option<String> {
        self.addr.map(|addr| addr.to_string())
    }

    fn user_agent_text(&self) -> Option<String> {
        self.user_agent
            .as_deref()
            .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect())
    }
}

/// Whose session it is.
pub enum Holder<'a> {
    Operator {
        id: Uuid,
    },
    TenantUser {
        tenant_id: Uuid,
        schema: &'a SchemaName,
        id: Uuid,
        roles: Vec<String>,
        /// The stored hash the login verified: the session is bound to it (its users table
        /// may be on another server than the sessions).
        password_hash: &'a str,
    },
}

/// What a login or a refresh hands out: the access token and the refresh token to use next.
pub struct SessionTokens {
    pub access: IssuedToken,
    pub refresh_token: String,
}

/// SQL for the fingerprint of a stored password hash: a new password (even the same one again,
/// with a new salt) changes it, and the fingerprint reveals nothing about the hash.
fn password_fingerprint(column: &str) -> String {
    format!("encode(sha256(convert_to({column}, 'UTF8')), 'hex')")
}

/// [`password_fingerprint`] of a hash at hand (hex digits only, safe to write into SQL).
fn fingerprint_of(password_hash: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(password_hash.as_bytes()))
}

fn statement(sql: impl Into<String>, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn actor(kind: &'static str, user_id: Uuid, client: &ClientInfo) -> Actor {
    Actor {
        kind,
        id: Some(user_id.to_string()),
        client_addr: client.addr_text(),
    }
}

fn actor_kind(kind: &str) -> &'static str {
    if kind == PLATFORM {
        "PLATFORM"
    } else {
        "TENANT_USER"
    }
}

/// The one answer for unknown, malformed, expired, used and revoked refresh tokens.
fn invalid_refresh_token() -> AppError {
    AppError::Unauthenticated("invalid or expired refresh token".into())
}

/// Opens a session inside `txn`, the login's own transaction, and audits the login. Nothing is
/// handed out unless the caller commits.
pub async fn open(
    state: &AppState,
    txn: &DatabaseTransaction,
    holder: Holder<'_>,
    client: &ClientInfo,
) -> AppResult<SessionTokens> {
    let id = Uuid::new_v4();
    let (kind, tenant_id, user_id, fingerprint, claims) = match holder {
        Holder::Operator { id: user_id } => (
            PLATFORM,
            None,
            user_id,
            format!(
                "(SELECT {} FROM public.platform_users WHERE id = $4)",
                password_fingerprint("password_hash")
            ),
            None,
        ),
        Holder::TenantUser {
            tenant_id,
            schema,
            id: user_id,
            roles,
            password_hash,
        } => (
            TENANT,
            Some(tenant_id),
            user_id,
            format!("'{}'", fingerprint_of(password_hash)),
            Some((tenant_id, schema.as_str().to_owned(), roles)),
        ),
    };
    txn.execute_raw(statement(
        format!(
            "INSERT INTO public.sessions \
                 (id, kind, tenant_id, user_id, client_addr, user_agent, password_fingerprint) \
             VALUES ($1, $2, $3, $4, $5, $6, {fingerprint})"
        ),
        vec![
            id.into(),
            kind.into(),
            tenant_id.into(),
            user_id.into(),
            client.addr_text().into(),
            client.user_agent_text().into(),
        ],
    ))
    .await?;
    let refresh_token = issue_refresh_token(state, txn, id).await?;
    audit::record(
        txn,
        &actor(actor_kind(kind), user_id, client),
        "session.login",
        tenant_id,
        Outcome::Success,
        json!({ "sessionId": id, "userAgent": client.user_agent_text() }),
    )
    .await;
    let token_kind = match kind {
        PLATFORM => TokenKind::Platform,
        _ => TokenKind::TenantUser,
    };
    let access = state.jwt.issue(token_kind, user_id, id, claims)?;
    Ok(SessionTokens {
        access,
        refresh_token,
    })
}

async fn issue_refresh_token(
    state: &AppState,
    txn: &DatabaseTransaction,
    session_id: Uuid,
) -> AppResult<String> {
    let token = refresh_tokens::generate();
    txn.execute_raw(statement(
        "INSERT INTO public.refresh_tokens (hash, session_id, expires_at) \
         VALUES ($1, $2, now() + make_interval(secs => $3))",
        vec![
            token.hash.into(),
            session_id.into(),
            state.config.refresh_ttl.as_secs_f64().into(),
        ],
    ))
    .await?;
    Ok(token.token)
}

/// A session continued with a refresh token: the new tokens and who the session is for now.
pub struct Refreshed {
    pub tokens: SessionTokens,
    pub user_id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
    /// The tenant of a tenant user's session; `None` for a platform operator's.
    pub tenant: Option<tenants::Model>,
}

/// Exchanges a refresh token for a new access token and a new refresh token, in one
/// transaction: the old token is marked used, the session and its holder are checked against
/// current state, the new token is stored and the refresh audited. Only a committed exchange
/// hands anything out; a failure anywhere leaves the old token as it was.
pub async fn refresh(state: &AppState, token: &str, client: &ClientInfo) -> AppResult<Refreshed> {
    if !refresh_tokens::well_formed(token) {
        return Err(invalid_refresh_token());
    }
    let hash = refresh_tokens::hash(token);
    let txn = state.db.begin().await?;
    // Conditional: of two concurrent exchanges of one token, the second waits for the first
    // and then finds the token used.
    let claimed = txn
        .query_one_raw(statement(
            "UPDATE public.refresh_tokens SET used_at = now() \
              WHERE hash = $1 AND used_at IS NULL AND expires_at > now() \
              RETURNING session_id",
            vec![hash.clone().into()],
        ))
        .await?;
    let Some(claimed) = claimed else {
        return refuse_used_or_unknown(state, txn, &hash, client).await;
    };
    let session_id: Uuid = claimed.try_get("", "session_id")?;
    let session = txn
        .query_one_raw(statement(
            "UPDATE public.sessions \
                SET last_used_at = now(), \
                    client_addr = coalesce($2, client_addr), \
                    user_agent = coalesce($3, user_agent) \
              WHERE id = $1 AND revoked_at IS NULL \
              RETURNING kind, tenant_id, user_id",
            vec![
                session_id.into(),
                client.addr_text().into(),
                client.user_agent_text().into(),
            ],
        ))
        .await?;
    let Some(session) = session else {
        txn.rollback().await?;
        return Err(invalid_refresh_token());
    };
    let kind: String = session.try_get("", "kind")?;
    let tenant_id: Option<Uuid> = session.try_get("", "tenant_id")?;
    let user_id: Uuid = session.try_get("", "user_id")?;

    let current = match tenant_id {
        None => current_operator(&txn, session_id, user_id)
            .await?
            .map(|email| (email, Vec::new(), None)),
        Some(tenant_id) => current_tenant_user(state, &txn, session_id, tenant_id).await?,
    };
    let Some((email, roles, tenant)) = current else {
        // Suspended, password changed, tenant off: no new tokens, and the old one stays unused
        // (a suspension can be lifted).
        txn.rollback().await?;
        return Err(invalid_refresh_token());
    };
    let refresh_token = issue_refresh_token(state, &txn, session_id).await?;
    audit::record(
        &txn,
        &actor(actor_kind(&kind), user_id, client),
        "session.refresh",
        tenant_id,
        Outcome::Success,
        json!({ "sessionId": session_id }),
    )
    .await;
    let (token_kind, claims) = match &tenant {
        None => (TokenKind::Platform, None),
        Some(tenant) => (
            TokenKind::TenantUser,
            Some((tenant.id, tenant.schema_name.clone(), roles.clone())),
        ),
    };
    let access = state.jwt.issue(token_kind, user_id, session_id, claims)?;
    txn.commit().await?;
    Ok(Refreshed {
        tokens: SessionTokens {
            access,
            refresh_token,
        },
        user_id,
        email,
        roles,
        tenant,
    })
}

/// The refresh token was not claimable. A token that was used before is being reused: the
/// session it belongs to ends (every token of it), and that is audited. Unknown and expired
/// tokens change nothing. Either way the answer is the same.
async fn refuse_used_or_unknown(
    state: &AppState,
    txn: DatabaseTransaction,
    hash: &str,
    client: &ClientInfo,
) -> AppResult<Refreshed> {
    let used = txn
        .query_one_raw(statement(
            "SELECT session_id FROM public.refresh_tokens WHERE hash = $1 AND used_at IS NOT NULL",
            vec![hash.into()],
        ))
        .await?;
    let ended = match used {
        Some(row) => {
            end_session(&txn, row.try_get("", "session_id")?, "refresh token reused").await?
        }
        None => None,
    };
    let Some(ended) = ended else {
        txn.rollback().await?;
        return Err(invalid_refresh_token());
    };
    tracing::warn!(session_id = %ended.id, "a used refresh token was presented again; the session is ended");
    let kind = if ended.tenant.is_some() {
        TENANT
    } else {
        PLATFORM
    };
    audit::record(
        &txn,
        &actor(actor_kind(kind), ended.user, client),
        "session.reuse_detected",
        ended.tenant,
        Outcome::Success,
        json!({ "sessionId": ended.id }),
    )
    .await;
    txn.commit().await?;
    access::announce(state, ended.event()).await;
    Err(invalid_refresh_token())
}

/// A session that was just ended.
struct Ended {
    id: Uuid,
    tenant: Option<Uuid>,
    user: Uuid,
}

impl Ended {
    fn event(&self) -> AccessEvent {
        AccessEvent::Session {
            id: self.id,
            tenant: self.tenant,
            user: self.user,
        }
    }
}

/// Ends session `id` unless it already ended (the table's trigger tells the other servers).
async fn end_session(
    conn: &impl ConnectionTrait,
    id: Uuid,
    reason: &str,
) -> AppResult<Option<Ended>> {
    let row = conn
        .query_one_raw(statement(
            "UPDATE public.sessions SET revoked_at = now(), revoked_reason = $2 \
              WHERE id = $1 AND revoked_at IS NULL \
              RETURNING tenant_id, user_id",
            vec![id.into(), reason.into()],
        ))
        .await?;
    row.map(|row| {
        Ok(Ended {
            id,
            tenant: row.try_get("", "tenant_id")?,
            user: row.try_get("", "user_id")?,
        })
    })
    .transpose()
}

/// Ends the caller's session: its access token and its refresh tokens stop working at once.
/// API keys have no session to end.
pub async fn logout(state: &AppState, request: &RequestContext) -> AppResult<()> {
    let Some(session) = request.principal.session() else {
        return Err(match request.principal {
            crate::auth::Principal::Anonymous => AppError::unauthenticated(),
            _ => AppError::forbidden("an API key has no session to end"),
        });
    };
    let txn = state.db.begin().await?;
    let ended = end_session(&txn, session.id, "logout").await?;
    if let Some(ended) = &ended {
        audit::record(
            &txn,
            &Actor::from(request),
            "session.logout",
            ended.tenant,
            Outcome::Success,
            json!({ "sessionId": ended.id }),
        )
        .await;
    }
    txn.commit().await?;
    if let Some(ended) = ended {
        access::announce(state, ended.event()).await;
    }
    Ok(())
}

/// Ends every session of a user of the caller's tenant; returns how many were live.
pub async fn revoke_user_sessions(
    state: &AppState,
    request: &RequestContext,
    tenant: &TenantContext,
    user_id: Uuid,
) -> AppResult<u64> {
    let txn = tenant.begin(state).await?;
    let exists = txn
        .query_one_raw(statement(
            "SELECT 1 FROM users WHERE id = $1",
            vec![user_id.into()],
        ))
        .await?
        .is_some();
    if !exists {
        return Err(AppError::not_found("no such user"));
    }
    // Sessions live on the control database: in the pinned transaction when the tenant does
    // too, else in a transaction there.
    let ended = if tenant.tenant.server.is_none() {
        let ended = end_user_sessions(&txn, request, tenant, user_id).await?;
        txn.commit().await?;
        ended
    } else {
        crate::db::pinned::end_read(txn);
        let control = state.db.begin().await?;
        let ended = end_user_sessions(&control, request, tenant, user_id).await?;
        control.commit().await?;
        ended
    };
    access::announce(
        state,
        AccessEvent::User {
            tenant: tenant.tenant.id,
            id: user_id,
        },
    )
    .await;
    Ok(ended)
}

/// Ends every live session of a user of `tenant` and audits it, on `db`; returns how many.
async fn end_user_sessions(
    db: &impl ConnectionTrait,
    request: &RequestContext,
    tenant: &TenantContext,
    user_id: Uuid,
) -> AppResult<u64> {
    let ended = db
        .execute_raw(statement(
            "UPDATE public.sessions SET revoked_at = now(), revoked_reason = 'revoked' \
              WHERE kind = 'tenant' AND tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL",
            vec![tenant.tenant.id.into(), user_id.into()],
        ))
        .await?
        .rows_affected();
    audit::record(
        db,
        &Actor::from(request),
        "session.revoke",
        Some(tenant.tenant.id),
        Outcome::Success,
        json!({ "userId": user_id, "sessionsEnded": ended }),
    )
    .await;
    Ok(ended)
}

/// Ends every session of a tenant (an operator's action); returns how many were live.
pub async fn revoke_tenant_sessions(
    state: &AppState,
    actor: &Actor,
    tenant_id: Uuid,
) -> AppResult<u64> {
    let tenant = registry::find_live(&state.db, tenant_id).await?;
    let txn = state.db.begin().await?;
    let ended = end_tenant_sessions(&txn, tenant.id, "revoked by an operator").await?;
    audit::record(
        &txn,
        actor,
        "session.revoke",
        Some(tenant.id),
        Outcome::Success,
        json!({ "sessionsEnded": ended, "domain": tenant.domain }),
    )
    .await;
    txn.commit().await?;
    access::announce(state, AccessEvent::Tenant { id: tenant.id }).await;
    Ok(ended)
}

/// How long an ended session's row stays; its story stays in the audit trail for good.
const ENDED_SESSION_RETENTION_SECONDS: u64 = 7 * 24 * 3600;

/// Deletes what can never be used again, so the tables stay the size of the live sessions:
/// refresh tokens past their expiry (presenting one is refused for that alone), sessions ended
/// a week ago, and sessions that no live refresh token continues and whose last access token
/// (issued at their last use at the latest) has expired, a week on. Returns the sessions
/// deleted.
pub async fn prune_ended(state: &AppState) -> AppResult<u64> {
    let txn = state.db.begin().await?;
    txn.execute_unprepared("DELETE FROM public.refresh_tokens WHERE expires_at < now()")
        .await?;
    let pruned = txn
        .execute_raw(statement(
            "DELETE FROM public.sessions s \
              WHERE s.revoked_at < now() - make_interval(secs => $1) \
                 OR (s.revoked_at IS NULL \
                     AND s.last_used_at < now() - make_interval(secs => $1 + $2) \
                     AND NOT EXISTS (SELECT 1 FROM public.refresh_tokens r \
                                      WHERE r.session_id = s.id))",
            vec![
                (ENDED_SESSION_RETENTION_SECONDS as f64).into(),
                (state.config.jwt_ttl.as_secs() as f64).into(),
            ],
        ))
        .await?
        .rows_affected();
    txn.commit().await?;
    Ok(pruned)
}

/// The email of the operator behind a live platform session, when the operator is still active
/// and has the password the session began with.
pub async fn current_operator(
    conn: &impl ConnectionTrait,
    session_id: Uuid,
    operator_id: Uuid,
) -> AppResult<Option<String>> {
    let row = conn
        .query_one_raw(statement(
            format!(
                "SELECT p.email FROM public.sessions s \
                   JOIN public.platform_users p ON p.id = s.user_id \
                  WHERE s.id = $1 AND s.user_id = $2 AND s.kind = 'platform' \
                    AND s.revoked_at IS NULL AND p.is_active \
                    AND s.password_fingerprint = {}",
                password_fingerprint("p.password_hash")
            ),
            vec![session_id.into(), operator_id.into()],
        ))
        .await?;
    Ok(row.map(|row| row.try_get("", "email")).transpose()?)
}

/// A tenant user's session as it stands, read in one statement.
#[derive(Debug, Clone)]
pub struct TenantSessionState {
    pub user_id: Uuid,
    /// Not ended, the user `active` and with the password the session began with.
    pub usable: bool,
    pub email: String,
    pub roles: Vec<String>,
}

/// Reads session `session_id` of tenant `tenant_id`, whose schema is `schema` (a validated
/// name from the registry), with its user's status, password and current roles. A schema
/// dropped meanwhile reads as no session.
pub async fn tenant_session_state(
    conn: &impl ConnectionTrait,
    schema: &SchemaName,
    session_id: Uuid,
    tenant_id: Uuid,
) -> AppResult<Option<TenantSessionState>> {
    let s = schema.quoted();
    let read = conn
        .query_one_raw(statement(
            format!(
                "SELECT s.user_id, \
                        s.revoked_at IS NULL \
                          AND coalesce(st.code = 'active', false) \
                          AND coalesce(s.password_fingerprint = {fingerprint}, false) AS usable, \
                        coalesce(u.email, '') AS email, \
                        coalesce(array_agg(r.name ORDER BY r.name) \
                                 FILTER (WHERE r.name IS NOT NULL), '{{}}') AS roles \
                   FROM public.sessions s \
                   LEFT JOIN {s}.users u ON u.id = s.user_id \
                   LEFT JOIN {s}.user_statuses st ON st.id = u.status_id \
                   LEFT JOIN {s}.user_roles ur ON ur.user_id = u.id \
                   LEFT JOIN {s}.roles r ON r.id = ur.role_id \
                  WHERE s.id = $1 AND s.tenant_id = $2 AND s.kind = 'tenant' \
                  GROUP BY s.id, u.id, st.code",
                fingerprint = password_fingerprint("u.password_hash"),
            ),
            vec![session_id.into(), tenant_id.into()],
        ))
        .await;
    let row: Option<QueryResult> = match read {
        Ok(row) => row,
        Err(err) if schema_gone(&err) => None,
        Err(err) => return Err(err.into()),
    };
    row.map(|row| {
        Ok(TenantSessionState {
            user_id: row.try_get("", "user_id")?,
            usable: row.try_get("", "usable")?,
            email: row.try_get("", "email")?,
            roles: row.try_get("", "roles")?,
        })
    })
    .transpose()
}

/// [`tenant_session_state`] of a tenant on `server` (`None`: the control database, where it is
/// one statement). For a tenant on another server, the session comes from `control` and its
/// user from the tenant's server: two statements, the same verdict.
pub async fn session_state_on(
    state: &AppState,
    control: &impl ConnectionTrait,
    server: Option<&str>,
    schema: &SchemaName,
    session_id: Uuid,
    tenant_id: Uuid,
) -> AppResult<Option<TenantSessionState>> {
    let Some(server) = server.filter(|name| *name != CONTROL_SERVER) else {
        return tenant_session_state(control, schema, session_id, tenant_id).await;
    };
    let Some(session) = control
        .query_one_raw(statement(
            "SELECT user_id, revoked_at IS NULL AS live, password_fingerprint \
               FROM public.sessions WHERE id = $1 AND tenant_id = $2 AND kind = 'tenant'",
            vec![session_id.into(), tenant_id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let user_id: Uuid = session.try_get("", "user_id")?;
    let live: bool = session.try_get("", "live")?;
    let bound_to: Option<String> = session.try_get("", "password_fingerprint")?;
    let db = state.servers.pool(Some(server)).await?;
    let s = schema.quoted();
    let read = db
        .query_one_raw(statement(
            format!(
                "SELECT coalesce(st.code = 'active', false) AS active, \
                        {fingerprint} AS fingerprint, u.email, \
                        coalesce(array_agg(r.name ORDER BY r.name) \
                                 FILTER (WHERE r.name IS NOT NULL), '{{}}') AS roles \
                   FROM {s}.users u \
                   LEFT JOIN {s}.user_statuses st ON st.id = u.status_id \
                   LEFT JOIN {s}.user_roles ur ON ur.user_id = u.id \
                   LEFT JOIN {s}.roles r ON r.id = ur.role_id \
                  WHERE u.id = $1 \
                  GROUP BY u.id, st.code",
                fingerprint = password_fingerprint("u.password_hash"),
            ),
            vec![user_id.into()],
        ))
        .await;
    let user = match read {
        Ok(user) => user,
        Err(err) if schema_gone(&err) => None,
        Err(err) => return Err(state.servers.failed(Some(server), err)),
    };
    let Some(user) = user else {
        return Ok(Some(TenantSessionState {
            user_id,
            usable: false,
            email: String::new(),
            roles: Vec::new(),
        }));
    };
    let active: bool = user.try_get("", "active")?;
    let fingerprint: Option<String> = user.try_get("", "fingerprint")?;
    Ok(Some(TenantSessionState {
        user_id,
        usable: live && active && fingerprint.is_some() && fingerprint == bound_to,
        email: user.try_get("", "email")?,
        roles: user.try_get("", "roles")?,
    }))
}

/// undefined_table (42P01) or invalid_schema_name (3F000): the tenant's schema went away.
fn schema_gone(err: &DbErr) -> bool {
    code_of(err).is_some_and(|code| code == "42P01" || code == "3F000")
}

/// The email, current roles and tenant of a live tenant session whose tenant is `ACTIVE` and
/// whose user is `active` with an unchanged password.
async fn current_tenant_user(
    state: &AppState,
    txn: &DatabaseTransaction,
    session_id: Uuid,
    tenant_id: Uuid,
) -> AppResult<Option<(String, Vec<String>, Option<tenants::Model>)>> {
    let tenant = match registry::find_live(txn, tenant_id).await {
        Ok(tenant) if tenant.status == TenantStatus::Active => tenant,
        Ok(_) | Err(AppError::NotFound(_)) => return Ok(None),
        Err(err) => return Err(err),
    };
    let schema = registry::schema_of(&tenant);
    let session = session_state_on(
        state,
        txn,
        tenant.server_name.as_deref(),
        &schema,
        session_id,
        tenant_id,
    )
    .await?;
    Ok(session
        .filter(|state| state.usable)
        .map(|state| (state.email, state.roles, Some(tenant))))
}

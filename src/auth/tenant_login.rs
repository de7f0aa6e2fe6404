//! Tenant user login: the tenant by domain or schema, the user in the tenant's own schema, one
//! answer for every kind of failure, and throttling that counts an attempt before verifying it.

use entity::public::tenants;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::{
    auth::{
        sessions::{self, ClientInfo, Holder, SessionTokens},
        throttle::AttemptKeys,
    },
    db::pinned::{begin_in_schema, end_read},
    error::{AppError, AppResult},
    primitives::credentials::{check_login_lengths, email_key},
    state::AppState,
    tenancy::{TenantStatus, registry::schema_of},
};

/// A tenant user who logged in, with the tokens of their new session.
pub struct LoggedIn {
    pub tokens: SessionTokens,
    pub tenant: tenants::Model,
    pub user_id: Uuid,
    pub email: String,
    pub roles: Vec<String>,
}

struct StoredUser {
    id: Uuid,
    email: String,
    password_hash: Option<String>,
    active: bool,
    roles: Vec<String>,
}

pub async fn login(
    state: &AppState,
    tenant_ref: &str,
    email: &str,
    password: SecretString,
    client: Option<std::net::IpAddr>,
    user_agent: Option<&str>,
) -> AppResult<LoggedIn> {
    check_login_lengths(email, password.expose_secret())?;
    let tenant_ref = tenant_ref.trim().to_ascii_lowercase();
    if tenant_ref.len() > 253 {
        return Err(AppError::bad_input("tenant", "tenant is too long"));
    }
    // A slug domain can equal another tenant's schema name: the domain wins.
    let tenant = tenants::Entity::find()
        .filter(tenants::Column::DeletedAt.is_null())
        .filter(
            Condition::any()
                .add(tenants::Column::Domain.eq(tenant_ref.as_str()))
                .add(tenants::Column::SchemaName.eq(tenant_ref.as_str())),
        )
        .order_by_desc(Expr::col(tenants::Column::Domain).eq(tenant_ref.as_str()))
        .one(&state.db)
        .await?
        .filter(|tenant| tenant.status == TenantStatus::Active);

    let scope = tenant
        .as_ref()
        .map_or_else(|| format!("unknown:{tenant_ref}"), |t| t.id.to_string());
    let keys = AttemptKeys::new(&scope, email, client);
    // Counted before the password is verified; a failure keeps the count.
    let mut attempt = state.login_throttle.reserve(&keys).await?;

    let user = match &tenant {
        Some(tenant) => find_user(state, tenant, email).await?,
        None => None,
    };
    let stored_hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let password_ok = attempt.checked(state.passwords.verify(password, stored_hash).await)?;
    let (Some(tenant), Some(user)) = (tenant, user) else {
        return Err(AppError::invalid_credentials());
    };
    if !(password_ok && user.active) {
        return Err(AppError::invalid_credentials());
    }
    attempt.succeeded();

    let schema = schema_of(&tenant);
    let server = tenant.server_name.as_deref();
    let db = state.servers.pool(server).await?;
    let txn = begin_in_schema(&db, &schema)
        .await
        .map_err(|err| state.servers.failed(server, err))?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE users SET last_login_at = now() WHERE id = $1",
        [user.id.into()],
    ))
    .await?;
    let holder = Holder::TenantUser {
        tenant_id: tenant.id,
        schema: &schema,
        id: user.id,
        roles: user.roles.clone(),
        password_hash: user.password_hash.as_deref().unwrap_or_default(),
    };
    let client = ClientInfo {
        addr: client,
        user_agent: user_agent.map(str::to_owned),
    };
    // The session goes with the login's own transaction when the tenant lives on the control
    // database; else into one there, once the tenant's server recorded the login.
    let tokens = if server.is_none() {
        let tokens = sessions::open(state, &txn, holder, &client).await?;
        txn.commit().await?;
        tokens
    } else {
        txn.commit().await?;
        let control = state.db.begin().await?;
        let tokens = sessions::open(state, &control, holder, &client).await?;
        control.commit().await?;
        tokens
    };

    Ok(LoggedIn {
        tokens,
        tenant,
        user_id: user.id,
        email: user.email,
        roles: user.roles,
    })
}

/// How a user is looked up.
enum UserKey<'a> {
    Email(&'a str),
    Id(Uuid),
}

/// A user with status and roles, read in one statement inside a pinned transaction.
async fn load_user(txn: &impl ConnectionTrait, key: UserKey<'_>) -> AppResult<Option<StoredUser>> {
    let (condition, value): (&str, sea_orm::Value) = match key {
        UserKey::Email(email) => ("u.email = $1", email_key(email).into()),
        UserKey::Id(id) => ("u.id = $1", id.into()),
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT u.id, u.email, u.password_hash, s.code = 'active' AS active, \
                        coalesce(array_agg(r.name ORDER BY r.name) FILTER (WHERE r.name IS NOT NULL), '{{}}') AS roles \
                   FROM users u \
                   JOIN user_statuses s ON s.id = u.status_id \
                   LEFT JOIN user_roles ur ON ur.user_id = u.id \
                   LEFT JOIN roles r ON r.id = ur.role_id \
                  WHERE {condition} \
                  GROUP BY u.id, s.code"
            ),
            [value],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(StoredUser {
        id: row.try_get("", "id")?,
        email: row.try_get("", "email")?,
        password_hash: row.try_get("", "password_hash")?,
        active: row.try_get("", "active")?,
        roles: row.try_get("", "roles")?,
    }))
}

async fn find_user(
    state: &AppState,
    tenant: &tenants::Model,
    email: &str,
) -> AppResult<Option<StoredUser>> {
    let server = tenant.server_name.as_deref();
    let db = state.servers.pool(server).await?;
    let txn = begin_in_schema(&db, &schema_of(tenant))
        .await
        .map_err(|err| state.servers.failed(server, err))?;
    let user = load_user(&txn, UserKey::Email(email)).await?;
    txn.commit().await?;
    Ok(user)
}

/// The acting user's email and current roles, read in the tenant's schema.
pub async fn describe_user(
    state: &AppState,
    context: &crate::auth::tenant::TenantContext,
    user_id: Uuid,
) -> AppResult<Option<(String, Vec<String>)>> {
    let txn = context.begin(state).await?;
    let user = load_user(&txn, UserKey::Id(user_id)).await?;
    end_read(txn);
    Ok(user.map(|user| (user.email, user.roles)))
}

//! Platform operators (`public.platform_users`): creation, bootstrap and login.

use entity::public::platform_users;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::OnConflict,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::{
    auth::{
        password::PasswordHasherPool,
        sessions::{self, ClientInfo, Holder, SessionTokens},
        throttle::AttemptKeys,
    },
    error::{AppError, AppResult},
    primitives::credentials::{
        check_login_lengths, check_password_rules, email_key, normalize_email,
    },
    state::AppState,
};

/// Creates an operator; an existing email is a `CONFLICT`.
pub async fn create(
    db: &impl ConnectionTrait,
    passwords: &PasswordHasherPool,
    email: &str,
    password: SecretString,
    name: Option<String>,
) -> AppResult<platform_users::Model> {
    let email = normalize_email("email", email)?;
    check_password_rules("password", password.expose_secret())?;
    let password_hash = passwords.hash(password).await?;
    let operator = platform_users::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(email),
        password_hash: Set(password_hash),
        name: Set(name),
        ..Default::default()
    };
    Ok(platform_users::Entity::insert(operator)
        .exec_with_returning(db)
        .await?)
}

/// What start-up did about the first operator.
#[derive(Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// Operators exist already; nothing was done.
    AlreadyPresent,
    /// The configured `BOOTSTRAP_ADMIN_EMAIL` operator was created.
    Configured { email: String },
    /// `admin@localhost` was created with this random password, to be shown once.
    Generated { email: String, password: String },
}

/// Makes sure at least one operator exists. Safe when several servers start at once: the insert
/// is conditional, so exactly one of them creates the operator.
pub async fn bootstrap(
    db: &impl ConnectionTrait,
    passwords: &PasswordHasherPool,
    configured: Option<(String, SecretString)>,
) -> AppResult<Bootstrap> {
    if platform_users::Entity::find().one(db).await?.is_some() {
        return Ok(Bootstrap::AlreadyPresent);
    }
    let (email, password, generated) = match configured {
        Some((email, password)) => (email, password, false),
        None => {
            let password = crate::auth::random_token(24);
            ("admin@localhost".to_owned(), password.into(), true)
        }
    };
    let password_hash = passwords.hash(password.clone()).await?;
    let inserted = platform_users::Entity::insert(platform_users::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(email.clone()),
        password_hash: Set(password_hash),
        name: Set(Some("Platform administrator".into())),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::column(platform_users::Column::Email)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(match (inserted, generated) {
        (0, _) => Bootstrap::AlreadyPresent,
        (_, false) => Bootstrap::Configured { email },
        (_, true) => Bootstrap::Generated {
            email,
            password: password.expose_secret().to_owned(),
        },
    })
}

/// Platform login: the same error, after the same work, for an unknown email, a wrong password
/// and a disabled operator. Opens a session.
pub async fn login(
    state: &AppState,
    email: &str,
    password: SecretString,
    client: Option<std::net::IpAddr>,
    user_agent: Option<&str>,
) -> AppResult<(SessionTokens, platform_users::Model)> {
    check_login_lengths(email, password.expose_secret())?;
    let keys = AttemptKeys::new("platform", email, client);
    // Counted before the password is verified; a failure keeps the count.
    let mut attempt = state.login_throttle.reserve(&keys).await?;
    let operator = platform_users::Entity::find()
        .filter(platform_users::Column::Email.eq(email_key(email)))
        .one(&state.db)
        .await?;
    let stored_hash = operator.as_ref().map(|op| op.password_hash.clone());
    let password_ok = attempt.checked(state.passwords.verify(password, stored_hash).await)?;
    let operator = match operator {
        Some(operator) if password_ok && operator.is_active => operator,
        _ => return Err(AppError::invalid_credentials()),
    };
    attempt.succeeded();
    let txn = state.db.begin().await?;
    platform_users::Entity::update_many()
        .col_expr(
            platform_users::Column::LastLoginAt,
            sea_orm::sea_query::Expr::current_timestamp(),
        )
        .filter(platform_users::Column::Id.eq(operator.id))
        .exec(&txn)
        .await?;
    let tokens = sessions::open(
        state,
        &txn,
        Holder::Operator { id: operator.id },
        &ClientInfo {
            addr: client,
            user_agent: user_agent.map(str::to_owned),
        },
    )
    .await?;
    txn.commit().await?;
    Ok((tokens, operator))
}

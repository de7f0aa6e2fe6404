//! The one error type of the API and its mapping to the contract's `extensions.code`s.
//!
//! Internal failures are logged with their detail under a reference id; the client sees only
//! `INTERNAL` and the id. `DbErr` is converted on purpose (unique violations become `CONFLICT`),
//! never passed through, so no SQL text reaches a client.

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, SqlErr};

/// Result of services and resolvers.
pub type AppResult<T> = Result<T, AppError>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    BadUserInput {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    /// `reason` says what was too much (`too many attempts`, `too many requests for this
    /// tenant`, ...).
    #[error("{reason}; retry in {retry_after_secs} s")]
    RateLimited {
        reason: &'static str,
        retry_after_secs: u64,
    },
    #[error("{0}")]
    Timeout(String),
    /// The database server a tenant lives on cannot be reached; tenants elsewhere are served.
    #[error("{0}")]
    ServerUnavailable(String),
    /// A multi-step operation failed at `step`; `message` says what was done about it.
    #[error("{message}")]
    Failed {
        step: &'static str,
        message: String,
        /// The cause may go away by itself; trying again makes sense.
        transient: bool,
        /// Where the log holds the cause's detail, when it was an internal failure.
        reference: Option<uuid::Uuid>,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn unauthenticated() -> Self {
        AppError::Unauthenticated("authentication required".into())
    }

    pub fn invalid_credentials() -> Self {
        AppError::Unauthenticated("invalid email or password".into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden(message.into())
    }

    pub fn bad_input(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadUserInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::NotFound(message.into())
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Conflict {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(error.into())
    }

    /// Whether trying again may succeed: lost connections, lock time-outs, deadlocks,
    /// serialization failures and time-outs. Bad input and conflicts never are.
    pub fn is_transient(&self) -> bool {
        match self {
            AppError::Timeout(_) | AppError::ServerUnavailable(_) => true,
            AppError::Failed { transient, .. } => *transient,
            AppError::Internal(err) => err
                .chain()
                .filter_map(|cause| cause.downcast_ref::<DbErr>())
                .any(is_transient_db_error),
            _ => false,
        }
    }

    /// What a client may read, and the reference it may quote: bad input, conflicts and the like
    /// say what they are; an internal failure is logged with its detail under a new reference
    /// and reads `internal error (reference …)`, never database text, SQL or a stack. The one
    /// place that turns errors into client text: responses, batch results and progress events.
    pub fn client_message(&self) -> (String, Option<uuid::Uuid>) {
        match self {
            AppError::Internal(source) => {
                let reference = report_internal(source);
                (internal_message(reference), Some(reference))
            }
            AppError::Failed { reference, .. } => (self.to_string(), *reference),
            other => (other.to_string(), None),
        }
    }

    /// The contract's `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::BadUserInput { .. } => "BAD_USER_INPUT",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict { .. } => "CONFLICT",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Timeout(_) => "TIMEOUT",
            AppError::ServerUnavailable(_) => "SERVER_UNAVAILABLE",
            AppError::Failed { .. } => "INTERNAL",
            AppError::Internal(_) => "INTERNAL",
        }
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(detail)) => AppError::Conflict {
                field: conflicting_field(&detail),
                message: "already exists".into(),
            },
            _ => AppError::Internal(err.into()),
        }
    }
}

/// Lost connections, pool exhaustion, and the SQLSTATEs of errors that a retry can outlive:
/// serialization failure (40001), deadlock (40P01), lock not available (55P03), query canceled
/// by a timeout (57014), admin shutdown (57P01) and connection exceptions (08xxx).
pub fn is_transient_db_error(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        other => {
            let text = other.to_string();
            ["40001", "40P01", "55P03", "57014", "57P01"]
                .iter()
                .any(|code| text.contains(code))
                || code_of(other).is_some_and(|code| code.starts_with("08"))
        }
    }
}

/// The SQLSTATE of a database error, when there is one.
pub fn code_of(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|db| db.code())
            .map(|code| code.into_owned()),
        _ => None,
    }
}

/// Names the input field behind a unique-constraint violation from the constraint's name, which
/// the migrations keep as `<table>_<column>_key`.
fn conflicting_field(detail: &str) -> Option<String> {
    // `schema_name` before `name`: `tenants_schema_name_key` ends in both.
    ["domain", "schema_name", "email", "tenant_type", "name"]
        .into_iter()
        .find(|column| detail.contains(&format!("_{column}_key")))
        .map(|column| match column {
            "schema_name" => "schemaName".to_owned(),
            "tenant_type" => "tenantType".to_owned(),
            other => other.to_owned(),
        })
}

/// Logs an internal failure's detail under a new reference id, for [`internal_message`].
pub fn report_internal(source: &anyhow::Error) -> uuid::Uuid {
    let reference = uuid::Uuid::new_v4();
    tracing::error!(%reference, error = ?source, "internal error");
    reference
}

/// The stable text a client reads for an internal failure logged under `reference`.
pub fn internal_message(reference: uuid::Uuid) -> String {
    format!("internal error (reference {reference})")
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        AppError::Internal(err)
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.extend()
    }
}

impl ErrorExtensions for AppError {
    fn extend(&self) -> async_graphql::Error {
        let (message, reference) = self.client_message();
        async_graphql::Error::new(message).extend_with(|_, ext| {
            ext.set("code", self.code());
            if let Some(reference) = reference {
                ext.set("reference", reference.to_string());
            }
            match self {
                AppError::BadUserInput {
                    field: Some(field), ..
                }
                | AppError::Conflict {
                    field: Some(field), ..
                } => ext.set("field", field.as_str()),
                AppError::RateLimited {
                    retry_after_secs, ..
                } => ext.set("retryAfterSeconds", *retry_after_secs),
                AppError::Failed { step, .. } => ext.set("step", *step),
                AppError::ServerUnavailable(_) => ext.set("retryAfterSeconds", 2),
                _ => {}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_detail() {
        let err = AppError::internal(anyhow::anyhow!(
            "relation \"secret_table\" does not exist: SELECT * FROM secret_table"
        ));
        let gql = async_graphql::Error::from(err);
        assert!(gql.message.starts_with("internal error (reference "));
        assert!(!gql.message.contains("secret_table"));
        let extensions = gql.extensions.expect("extensions");
        assert!(extensions.get("reference").is_some());
    }

    #[test]
    fn unique_violations_name_the_field() {
        assert_eq!(
            conflicting_field(
                "duplicate key value violates unique constraint \"tenants_domain_key\""
            ),
            Some("domain".into())
        );
        assert_eq!(
            conflicting_field("unique constraint \"tenants_schema_name_key\""),
            Some("schemaName".into())
        );
        assert_eq!(
            conflicting_field("unique constraint \"tenant_templates_tenant_type_key\""),
            Some("tenantType".into())
        );
        assert_eq!(
            conflicting_field("unique constraint \"tenant_templates_name_key\""),
            Some("name".into())
        );
    }
}

//! Typed configuration read from the environment once, at start-up.
//!
//! Every variable is parsed and checked here, so a bad value stops the process with one line naming
//! the variable and what it expects, instead of failing later in the middle of a request.

use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, time::Duration};

use ipnet::IpNet;
use secrecy::SecretString;

use crate::primitives::{
    credentials::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES, check_password_rules, parse_email},
    hosts::normalize_host,
    schema_name::is_valid_identifier,
};

/// A configuration value that could not be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {variable}={value:?}: expected {expected}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: String,
}

/// What stands between tenantgraph and PostgreSQL (`DATABASE_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabasePooler {
    /// `DATABASE_URL` is PostgreSQL itself (or a pooler in session mode).
    None,
    /// `DATABASE_URL` is PgBouncer in transaction mode: consecutive transactions may run on
    /// different server connections, so nothing may outlive a transaction.
    PgBouncer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The connections a pool of `size` may open: `size` for statements and transactions, and
/// straight to PostgreSQL as many for a tenant's single-statement reads (see `db::reads`).
pub fn connections_of_pool(size: u32) -> u32 {
    2 * size
}

/// Everything the server needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None`: run on the embedded PostgreSQL cluster under `data_dir`.
    pub database_url: Option<SecretString>,
    pub database_max_connections: u32,
    /// Pool size of each added database server (`DATABASE_SERVER_MAX_CONNECTIONS`).
    pub database_server_max_connections: u32,
    /// Live tenants placement may put on the control database (`CONTROL_SERVER_CAPACITY`);
    /// `None`: no limit.
    pub control_server_capacity: Option<i32>,
    /// Connections all pools together may open, the control database's included
    /// (`DATABASE_TOTAL_MAX_CONNECTIONS`).
    pub database_total_max_connections: u32,
    pub database_pooler: DatabasePooler,
    /// A session connection for what must outlive a transaction (the batch locks); `None`:
    /// `database_url` itself, which then must not be a transaction pooler.
    pub database_direct_url: Option<SecretString>,
    pub data_dir: PathBuf,
    pub pg_bin: Option<PathBuf>,
    pub bind_addr: SocketAddr,
    pub bootstrap_admin: Option<BootstrapAdmin>,
    pub graphql_introspection: bool,
    /// Adds `extensions.sqlStatements` (statements the operation sent) to every response.
    pub graphql_statement_counts: bool,
    /// Allowed browser origins; empty means CORS is off and WebSocket origins are not checked.
    pub cors_origins: Vec<String>,
    /// `None`: generate one and keep it in `data_dir`.
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of an access token (`JWT_TTL_SECONDS`).
    pub jwt_ttl: Duration,
    /// Lifetime of a refresh token (`REFRESH_TTL_SECONDS`): a session not refreshed for this long
    /// has to log in again.
    pub refresh_ttl: Duration,
    pub tenant_schema_prefix: String,
    pub api_key_prefix: String,
    pub max_tenants_per_batch: u32,
    pub max_concurrent_operations: u32,
    pub operation_timeout: Duration,
    pub retry_attempts: u32,
    pub enable_rollback: bool,
    /// How long a stopping server lets running tenant jobs and open connections finish
    /// (`SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace: Duration,
    /// How often a server looks for batches no live server runs (`BATCH_TAKEOVER_INTERVAL_MS`).
    pub batch_takeover_interval: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies, load balancers).
    pub trusted_proxies: Vec<IpNet>,
    /// Password hashing jobs running or waiting at once; a login past it is `RATE_LIMITED`.
    pub password_hash_queue: usize,
    /// Operations a tenant may start per minute on one server (`TENANT_RATE_LIMIT_PER_MINUTE`),
    /// unless its settings say otherwise; `None`: no limit.
    pub tenant_rate_limit_per_minute: Option<NonZeroU32>,
    /// Operations one platform operator may start per minute (`PLATFORM_RATE_LIMIT_PER_MINUTE`);
    /// `None`: no limit.
    pub platform_rate_limit_per_minute: Option<NonZeroU32>,
    /// Pooled connections one tenant's requests may hold at once (`TENANT_DB_CONNECTIONS`).
    pub tenant_db_connections: u32,
    /// Pooled connections one request (or WebSocket operation) may hold at once
    /// (`REQUEST_DB_CONNECTIONS`).
    pub request_db_connections: u32,
    /// How long a transaction may wait for those slots before it is `RATE_LIMITED`
    /// (`DB_SLOT_WAIT_SECONDS`).
    pub db_slot_wait: Duration,
    /// Webhook hosts let through the private-address refusal (`WEBHOOK_ALLOWED_HOSTS`), as
    /// [`normalize_host`] writes them.
    pub webhook_allowed_hosts: Vec<String>,
    /// Attempts at a webhook delivery before it is `FAILED` (`WEBHOOK_MAX_ATTEMPTS`).
    pub webhook_max_attempts: u32,
    /// Wait after the first failed attempt, doubled after each further one
    /// (`WEBHOOK_RETRY_BASE_MS`).
    pub webhook_retry_base: Duration,
    /// Longest wait between attempts (`WEBHOOK_RETRY_MAX_SECONDS`).
    pub webhook_retry_max: Duration,
    /// Time-out of one attempt, connecting included (`WEBHOOK_TIMEOUT_SECONDS`).
    pub webhook_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct BootstrapAdmin {
    pub email: String,
    pub password: SecretString,
}

/// Largest request rate a limit may name (per minute); 0 turns a limit off.
pub const MAX_RATE_LIMIT_PER_MINUTE: u32 = 1_000_000;

/// Shortest accepted `JWT_SECRET`: HS256 wants at least as many bytes of key as hash output.
const MIN_JWT_SECRET_BYTES: usize = 32;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests can supply variables without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup: &lookup };
        let bootstrap_admin = match (
            env.text("BOOTSTRAP_ADMIN_EMAIL"),
            env.text("BOOTSTRAP_ADMIN_PASSWORD"),
        ) {
            (None, None) => None,
            (Some(email), Some(password)) => {
                let Ok(email) = parse_email(&email) else {
                    return Err(ConfigError::new(
                        "BOOTSTRAP_ADMIN_EMAIL",
                        email,
                        "an email address",
                    ));
                };
                if check_password_rules("BOOTSTRAP_ADMIN_PASSWORD", &password).is_err() {
                    return Err(ConfigError::new(
                        "BOOTSTRAP_ADMIN_PASSWORD",
                        "<hidden>",
                        format!("a password of {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes"),
                    ));
                }
                Some(BootstrapAdmin {
                    email,
                    password: password.into(),
                })
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "BOOTSTRAP_ADMIN_PASSWORD",
                    "",
                    "to be set together with BOOTSTRAP_ADMIN_EMAIL",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "BOOTSTRAP_ADMIN_EMAIL",
                    "",
                    "to be set together with BOOTSTRAP_ADMIN_PASSWORD",
                ));
            }
        };

        let jwt_secret = match env.text("JWT_SECRET") {
            Some(secret) if secret.len() < MIN_JWT_SECRET_BYTES => {
                return Err(ConfigError::new(
                    "JWT_SECRET",
                    "<hidden>",
                    format!("at least {MIN_JWT_SECRET_BYTES} bytes of secret"),
                ));
            }
            other => other.map(SecretString::from),
        };

        let database_url = env.postgres_url("DATABASE_URL")?;
        let database_direct_url = env.postgres_url("DATABASE_DIRECT_URL")?;
        let database_pooler = match env.text("DATABASE_POOLER") {
            None => DatabasePooler::None,
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "none" => DatabasePooler::None,
                "pgbouncer" => DatabasePooler::PgBouncer,
                _ => {
                    return Err(ConfigError::new(
                        "DATABASE_POOLER",
                        value,
                        "none or pgbouncer",
                    ));
                }
            },
        };
        if database_pooler == DatabasePooler::PgBouncer {
            if database_url.is_none() {
                return Err(ConfigError::new(
                    "DATABASE_POOLER",
                    "pgbouncer",
                    "none when DATABASE_URL is unset (the embedded cluster has no PgBouncer)",
                ));
            }
            if database_direct_url.is_none() {
                return Err(ConfigError::new(
                    "DATABASE_DIRECT_URL",
                    "",
                    "a postgres:// URL of PostgreSQL itself (or a session-mode pool) when \
                     DATABASE_POOLER=pgbouncer, for the batch locks",
                ));
            }
        }

        let tenant_schema_prefix = env
            .text("TENANT_SCHEMA_PREFIX")
            .unwrap_or_else(|| "tenant_".into());
        if tenant_schema_prefix.len() > 20
            || !is_valid_identifier(&tenant_schema_prefix)
            || tenant_schema_prefix.starts_with("pg_")
        {
            return Err(ConfigError::new(
                "TENANT_SCHEMA_PREFIX",
                tenant_schema_prefix,
                "1 to 20 characters of a-z, 0-9 and _, starting with a letter or _, not pg_",
            ));
        }

        let api_key_prefix = env.text("API_KEY_PREFIX").unwrap_or_else(|| "tk_".into());
        if api_key_prefix.is_empty()
            || api_key_prefix.len() > 16
            || !api_key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new(
                "API_KEY_PREFIX",
                api_key_prefix,
                "1 to 16 characters of letters, digits, _ and -",
            ));
        }

        let cors_origins = match env.text("CORS_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|origin| !origin.is_empty())
                .map(|origin| parse_origin(origin).map_err(|_| ()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|()| {
                    ConfigError::new(
                        "CORS_ORIGINS",
                        list.clone(),
                        "a comma-separated list of origins such as https://app.example.com",
                    )
                })?,
        };

        let trusted_proxies = match env.text("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => parse_networks(&list).ok_or_else(|| {
                ConfigError::new(
                    "TRUSTED_PROXIES",
                    list.clone(),
                    "a comma-separated list of addresses or CIDR networks such as 10.0.0.0/8",
                )
            })?,
        };

        let database_max_connections = env.number("DATABASE_MAX_CONNECTIONS", 10, 1..=500)?;
        Ok(Config {
            database_url,
            database_max_connections,
            database_server_max_connections: env.number(
                "DATABASE_SERVER_MAX_CONNECTIONS",
                database_max_connections,
                1..=500,
            )?,
            control_server_capacity: match env.text("CONTROL_SERVER_CAPACITY") {
                None => None,
                Some(_) => Some(env.number("CONTROL_SERVER_CAPACITY", 0, 0..=1_000_000)?),
            },
            database_total_max_connections: env.number(
                "DATABASE_TOTAL_MAX_CONNECTIONS",
                (database_max_connections * 10).max(100),
                connections_of_pool(database_max_connections)..=10_000,
            )?,
            database_pooler,
            database_direct_url,
            data_dir: env
                .text("DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("./data")),
            pg_bin: env.text("PG_BIN").map(PathBuf::from),
            bind_addr: match env.text("BIND_ADDR") {
                None => SocketAddr::from(([127, 0, 0, 1], 8000)),
                Some(addr) => addr.parse().map_err(|_| {
                    ConfigError::new("BIND_ADDR", addr, "an address such as 127.0.0.1:8000")
                })?,
            },
            bootstrap_admin,
            graphql_introspection: env.flag("GRAPHQL_INTROSPECTION", true)?,
            graphql_statement_counts: env.flag("GRAPHQL_STATEMENT_COUNTS", false)?,
            cors_origins,
            jwt_secret,
            jwt_ttl: Duration::from_secs(env.number("JWT_TTL_SECONDS", 900, 60..=2_592_000)?),
            refresh_ttl: Duration::from_secs(env.number(
                "REFRESH_TTL_SECONDS",
                2_592_000,
                300..=31_536_000,
            )?),
            tenant_schema_prefix,
            api_key_prefix,
            max_tenants_per_batch: env.number("MAX_TENANTS_PER_BATCH", 50, 1..=10_000)?,
            max_concurrent_operations: env.number("MAX_CONCURRENT_OPERATIONS", 5, 1..=64)?,
            operation_timeout: Duration::from_secs(env.number(
                "OPERATION_TIMEOUT_SECONDS",
                60,
                1..=3600,
            )?),
            retry_attempts: env.number("RETRY_ATTEMPTS", 2, 0..=10)?,
            enable_rollback: env.flag("ENABLE_ROLLBACK", true)?,
            shutdown_grace: Duration::from_secs(env.number(
                "SHUTDOWN_GRACE_SECONDS",
                20,
                0..=3600,
            )?),
            batch_takeover_interval: Duration::from_millis(env.number(
                "BATCH_TAKEOVER_INTERVAL_MS",
                1500,
                100..=600_000,
            )?),
            request_timeout: Duration::from_secs(env.number(
                "REQUEST_TIMEOUT_SECONDS",
                30,
                1..=3600,
            )?),
            max_body_bytes: env.number("MAX_BODY_BYTES", 1024 * 1024, 1024..=64 * 1024 * 1024)?,
            log_format: match env.text("LOG_FORMAT").as_deref() {
                None | Some("pretty") => LogFormat::Pretty,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    return Err(ConfigError::new("LOG_FORMAT", other, "pretty or json"));
                }
            },
            trusted_proxies,
            password_hash_queue: env.number(
                "PASSWORD_HASH_QUEUE",
                default_password_hash_queue(),
                1..=4096,
            )?,
            tenant_rate_limit_per_minute: NonZeroU32::new(env.number(
                "TENANT_RATE_LIMIT_PER_MINUTE",
                6000,
                0..=MAX_RATE_LIMIT_PER_MINUTE,
            )?),
            platform_rate_limit_per_minute: NonZeroU32::new(env.number(
                "PLATFORM_RATE_LIMIT_PER_MINUTE",
                6000,
                0..=MAX_RATE_LIMIT_PER_MINUTE,
            )?),
            // Half the pool: a tenant at its share leaves the other half to everybody else.
            tenant_db_connections: env.number(
                "TENANT_DB_CONNECTIONS",
                (database_max_connections / 2).max(1),
                1..=500,
            )?,
            request_db_connections: env.number("REQUEST_DB_CONNECTIONS", 2, 1..=64)?,
            db_slot_wait: Duration::from_secs(env.number("DB_SLOT_WAIT_SECONDS", 10, 1..=300)?),
            webhook_allowed_hosts: env
                .text("WEBHOOK_ALLOWED_HOSTS")
                .map(|list| {
                    list.split(',')
                        .map(normalize_host)
                        .filter(|host| !host.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            webhook_max_attempts: env.number("WEBHOOK_MAX_ATTEMPTS", 12, 1..=100)?,
            webhook_retry_base: Duration::from_millis(env.number(
                "WEBHOOK_RETRY_BASE_MS",
                10_000,
                10..=3_600_000,
            )?),
            webhook_retry_max: Duration::from_secs(env.number(
                "WEBHOOK_RETRY_MAX_SECONDS",
                21_600,
                1..=604_800,
            )?),
            webhook_timeout: Duration::from_secs(env.number(
                "WEBHOOK_TIMEOUT_SECONDS",
                10,
                1..=300,
            )?),
        })
    }
}

/// Four password hashing jobs per core: a burst waits its turn for at most a few hashes' time.
pub fn default_password_hash_queue() -> usize {
    4 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Reads `a.b.c.d/n, x:y::/n, a.b.c.d, ...`; a bare address is a network of that one address.
fn parse_networks(list: &str) -> Option<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .ok()
                .or_else(|| item.parse::<std::net::IpAddr>().ok().map(IpNet::from))
                .map(|net| net.trunc())
        })
        .collect()
}

/// Checks an origin of the form `scheme://host[:port]` and returns it normalised (no trailing /).
fn parse_origin(origin: &str) -> Result<String, url::ParseError> {
    let url = url::Url::parse(origin)?;
    let is_bare_origin = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if !is_bare_origin {
        return Err(url::ParseError::InvalidDomainCharacter);
    }
    Ok(url.origin().ascii_serialization())
}

impl ConfigError {
    fn new(variable: &'static str, value: impl Into<String>, expected: impl Into<String>) -> Self {
        ConfigError {
            variable,
            value: value.into(),
            expected: expected.into(),
        }
    }
}

/// Typed access to the variables; empty values count as unset.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn text(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// A `postgres://` URL, kept secret: it may hold a password.
    fn postgres_url(&self, name: &'static str) -> Result<Option<SecretString>, ConfigError> {
        match self.text(name) {
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                Err(ConfigError::new(
                    name,
                    "<hidden>",
                    "a postgres:// or postgresql:// URL",
                ))
            }
            other => Ok(other.map(SecretString::from)),
        }
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(value) => match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(name, value, "true or false")),
            },
        }
    }

    fn number<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(value) = self.text(name) else {
            return Ok(default);
        };
        match value.parse::<T>() {
            Ok(number) if range.contains(&number) => Ok(number),
            _ => Err(ConfigError::new(
                name,
                value,
                format!("a whole number from {} to {}", range.start(), range.end()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = config_with(&[]).unwrap();
        assert_eq!(config.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(config.tenant_schema_prefix, "tenant_");
        assert_eq!(config.api_key_prefix, "tk_");
        assert_eq!(config.max_tenants_per_batch, 50);
        assert_eq!(config.max_concurrent_operations, 5);
        assert!(config.graphql_introspection);
        assert!(config.database_url.is_none());
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.database_pooler, DatabasePooler::None);
        assert!(config.database_direct_url.is_none());
        assert_eq!(config.jwt_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_ttl, Duration::from_secs(30 * 24 * 3600));
    }

    #[test]
    fn a_bad_value_names_the_variable_and_what_is_expected() {
        let cases: &[(&str, &str)] = &[
            ("BIND_ADDR", "localhost"),
            ("JWT_TTL_SECONDS", "soon"),
            ("JWT_TTL_SECONDS", "5"),
            ("REFRESH_TTL_SECONDS", "60"),
            ("MAX_TENANTS_PER_BATCH", "0"),
            ("GRAPHQL_INTROSPECTION", "maybe"),
            ("LOG_FORMAT", "xml"),
            ("TENANT_SCHEMA_PREFIX", "Tenant-"),
            ("TENANT_SCHEMA_PREFIX", "pg_"),
            ("API_KEY_PREFIX", "tk key"),
            ("CORS_ORIGINS", "https://ok.example, not an origin"),
            ("CORS_ORIGINS", "https://app.example/path"),
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_DIRECT_URL", "localhost:5432"),
            ("DATABASE_POOLER", "pgpool"),
            ("JWT_SECRET", "short"),
            ("TRUSTED_PROXIES", "127.0.0.1/33"),
            ("TRUSTED_PROXIES", "127.0.0.1, proxy"),
            ("PASSWORD_HASH_QUEUE", "0"),
            ("WEBHOOK_MAX_ATTEMPTS", "0"),
            ("WEBHOOK_RETRY_BASE_MS", "1"),
            ("WEBHOOK_TIMEOUT_SECONDS", "0"),
        ];
        for (variable, value) in cases {
            let err = config_with(&[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, *variable, "for {variable}={value}");
            let line = err.to_string();
            assert!(line.starts_with(&format!("invalid {variable}=")), "{line}");
            assert!(line.contains("expected"), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug_output() {
        let err = config_with(&[("JWT_SECRET", "tiny-secret")]).unwrap_err();
        assert!(!err.to_string().contains("tiny-secret"));

        let config = config_with(&[
            ("JWT_SECRET", "a-very-long-secret-that-is-long-enough-1234"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("DATABASE_DIRECT_URL", "postgres://u:hunter3@db/x"),
        ])
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("a-very-long-secret"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("hunter3"), "{debug}");
    }

    #[test]
    fn pgbouncer_needs_a_database_url_and_a_direct_one() {
        let err = config_with(&[("DATABASE_POOLER", "pgbouncer")]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_POOLER");
        let err = config_with(&[
            ("DATABASE_POOLER", "pgbouncer"),
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:6432/app"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "DATABASE_DIRECT_URL");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
        let config = config_with(&[
            ("DATABASE_POOLER", "PgBouncer"),
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:6432/app"),
            ("DATABASE_DIRECT_URL", "postgres://u:p@127.0.0.1:5432/app"),
        ])
        .unwrap();
        assert_eq!(config.database_pooler, DatabasePooler::PgBouncer);
        assert!(config.database_direct_url.is_some());
    }

    #[test]
    fn cors_origins_are_normalised() {
        let config = config_with(&[(
            "CORS_ORIGINS",
            "https://app.example.com/, http://localhost:3000",
        )])
        .unwrap();
        assert_eq!(
            config.cors_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
    }

    #[test]
    fn trusted_proxies_take_networks_and_bare_addresses() {
        let config = config_with(&[("TRUSTED_PROXIES", "127.0.0.0/8, ::1,127.0.0.9/24")]).unwrap();
        let shown: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["127.0.0.0/8", "::1/128", "127.0.0.0/24"]);
        assert!(config_with(&[]).unwrap().trusted_proxies.is_empty());
    }

    #[test]
    fn the_password_hash_queue_defaults_to_four_jobs_per_core() {
        let config = config_with(&[]).unwrap();
        assert_eq!(config.password_hash_queue, default_password_hash_queue());
        assert!(config.password_hash_queue >= 4);
        let config = config_with(&[("PASSWORD_HASH_QUEUE", "1")]).unwrap();
        assert_eq!(config.password_hash_queue, 1);
    }

    #[test]
    fn webhook_allowed_hosts_are_kept_in_canonical_form() {
        let config =
            config_with(&[("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1, [::1],Hooks.Localhost,")]).unwrap();
        assert_eq!(
            config.webhook_allowed_hosts,
            ["127.0.0.1", "::1", "hooks.localhost"]
        );
        assert!(config_with(&[]).unwrap().webhook_allowed_hosts.is_empty());
    }

    #[test]
    fn bootstrap_admin_needs_both_variables() {
        let config = config_with(&[
            ("BOOTSTRAP_ADMIN_EMAIL", "Ops@Example.com"),
            ("BOOTSTRAP_ADMIN_PASSWORD", "correct horse battery"),
        ])
        .unwrap();
        assert_eq!(config.bootstrap_admin.unwrap().email, "ops@example.com");
        let err = config_with(&[("BOOTSTRAP_ADMIN_PASSWORD", "correct horse")]).unwrap_err();
        assert_eq!(err.variable, "BOOTSTRAP_ADMIN_EMAIL");
    }
}

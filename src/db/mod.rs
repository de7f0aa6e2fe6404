//! Database access: the connection pool, the embedded PostgreSQL default, public migrations.

pub mod embedded;
pub mod migrate;
pub mod notify;
pub mod pinned;
pub mod pool;
pub mod reads;
pub mod servers;
pub mod share;
pub mod statements;
pub mod tools;

use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use secrecy::ExposeSecret;

use crate::config::{Config, DatabasePooler};
use embedded::{EmbeddedOptions, EmbeddedPostgres};
pub use pool::Pool;

/// The database the embedded cluster serves tenantgraph from.
pub const EMBEDDED_DATABASE: &str = "tenantgraph";

/// The pool, and the embedded cluster behind it when there is one.
pub struct Connected {
    pub db: Pool,
    pub embedded: Option<EmbeddedPostgres>,
}

impl Connected {
    /// A session connection's URL for PostgreSQL's client programs: the embedded cluster's,
    /// else `DATABASE_DIRECT_URL`, else `DATABASE_URL`.
    pub fn session_url(&self, config: &Config) -> Option<String> {
        match &self.embedded {
            Some(embedded) => Some(embedded.url(EMBEDDED_DATABASE)),
            None => config
                .database_direct_url
                .as_ref()
                .or(config.database_url.as_ref())
                .map(|url| url.expose_secret().to_owned()),
        }
    }
}

/// Connects to `DATABASE_URL`, or starts the embedded cluster and connects to it (stopping it
/// again if that fails).
pub async fn connect(config: &Config) -> anyhow::Result<Connected> {
    if let Some(url) = &config.database_url {
        let db = open_pool_for(
            url.expose_secret(),
            config.database_max_connections,
            config.database_pooler,
        )
        .await?;
        return Ok(Connected { db, embedded: None });
    }
    let embedded = EmbeddedPostgres::start(EmbeddedOptions {
        data_dir: config.data_dir.clone(),
        pg_bin: config.pg_bin.clone(),
    })
    .await?;
    let opened = async {
        create_database_if_missing(&embedded.url("postgres"), EMBEDDED_DATABASE).await?;
        open_pool_for(
            &embedded.url(EMBEDDED_DATABASE),
            config.database_max_connections,
            DatabasePooler::None,
        )
        .await
    }
    .await;
    match opened {
        Ok(db) => Ok(Connected {
            db,
            embedded: Some(embedded),
        }),
        Err(err) => {
            stop_after_failure(embedded).await;
            Err(err)
        }
    }
}

/// Stops an embedded cluster (unless another process uses it) when start-up failed after
/// starting it; the start-up error is the one to report, so a failure here is only logged.
pub async fn stop_after_failure(embedded: EmbeddedPostgres) {
    if let Err(err) = embedded.stop().await {
        tracing::warn!(error = %format!("{err:#}"), "could not stop the embedded PostgreSQL");
    }
}

/// A pool straight to PostgreSQL that fails fast when the database is away instead of
/// queueing requests for minutes.
pub async fn open_pool(url: &str, max_connections: u32) -> anyhow::Result<DatabaseConnection> {
    Database::connect(straight_pool_options(url, max_connections))
        .await
        .map_err(|err| {
            // PgBouncer refuses a startup parameter sqlx sends unless told to ignore it.
            let hint = if err.to_string().contains("unsupported startup parameter") {
                " (is DATABASE_URL PgBouncer? then set DATABASE_POOLER=pgbouncer)"
            } else {
                ""
            };
            anyhow::Error::new(err).context(format!("could not connect to PostgreSQL{hint}"))
        })
}

/// The server's pool on `url`, set up for what stands in front of PostgreSQL (see [`Pool`]).
pub async fn open_pool_for(
    url: &str,
    max_connections: u32,
    pooler: DatabasePooler,
) -> anyhow::Result<Pool> {
    match pooler {
        DatabasePooler::None => Ok(Pool::new(
            open_pool(url, max_connections).await?,
            DatabasePooler::None,
        )
        .with_read_connections(url)),
        DatabasePooler::PgBouncer => {
            let mut options = pool_options(url, max_connections);
            // Nothing that outlives a transaction: no statement cache (each statement is
            // prepared and run in one transaction, see `Pool`), no `SET` after connecting (the
            // pool sets its search path in each transaction instead), and no
            // `extra_float_digits` startup parameter, which PgBouncer refuses unless it is
            // listed in `ignore_startup_parameters` (PostgreSQL 12 and newer send every float
            // exactly without it).
            options.map_sqlx_postgres_opts(|options| {
                options.statement_cache_capacity(0).extra_float_digits(None)
            });
            let db = Database::connect(options)
                .await
                .context("could not connect to PostgreSQL through PgBouncer")?;
            Ok(Pool::new(db, DatabasePooler::PgBouncer))
        }
    }
}

/// Idle time after which a pooled connection is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Idle time after which a pooled connection is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

/// Age after which a pooled connection is closed when it is next returned (or found idle) and
/// a fresh one takes its place.
///
/// A PostgreSQL backend keeps what it touched in every tenant's schema: the plans of the
/// foreign-key checks of each tenant it seeded, the relation entries of each schema it read.
/// None of that is freed while the backend lives, and every `CREATE`, `ALTER` or `DROP` in any
/// schema makes every backend walk its whole list of cached plans. A backend that lives for
/// hours walks thousands of other tenants' plans per statement of DDL, so provisioning and
/// fleet migrations slowed down with the number of tenants. Half a minute of a backend's
/// work is a few hundred plans at most; a new connection costs a few milliseconds.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

pub(crate) fn pool_options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(IDLE_TIMEOUT)
        .max_lifetime(CONNECTION_LIFETIME)
        // A connection back from a request was just checked by the pool (it syncs with the
        // server when a connection is returned); pinging it again on every checkout would add a
        // round trip to each request. Only one idle this long may have been dropped meanwhile.
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(|options| options.statement_cache_capacity(STATEMENT_CACHE));
    options
}

/// [`pool_options`] for a pool straight to PostgreSQL, where connections are sessions of
/// their own:
/// - no schema of ours on the search path: registry tables are always qualified, and tenant
///   tables resolve only inside a transaction pinned to one tenant or in a gated read that
///   names the schema;
/// - `plan_cache_mode = force_generic_plan` (sent with the startup packet, no round trip): a
///   prepared statement is planned once per connection instead of six times. PostgreSQL plans
///   a statement with parameters afresh for its first five runs before it keeps one plan, and a
///   tenant's gated read is its own statement on each connection (it names the schema), so
///   with a hundred busy tenants and connections renewed every [`CONNECTION_LIFETIME`] that
///   planning was a tenth of PostgreSQL's time under a read load. Our statements look rows up
///   by key or walk an index in order, where the plan does not depend on the values (a
///   search's `%…%` pattern can use no index whatever its value).
pub(crate) fn straight_pool_options(url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = pool_options(url, max_connections);
    options.set_schema_search_path("pg_catalog");
    options.map_sqlx_postgres_opts(|options| {
        options.options([("plan_cache_mode", "force_generic_plan")])
    });
    options
}

/// Prepared statements a connection keeps. A tenant's gated reads name its schema (see
/// [`pinned::read_as_owner`]), so each tenant a read connection serves adds its own few; this
/// many keep the plans of about a hundred busy tenants on every read connection (whose caches
/// hold nothing else, see [`reads`]). Each costs the server
/// about 2 KB (with 512, a 20-connection pool took the server from 85 to 107 MB under load)
/// and its backend more; [`CONNECTION_LIFETIME`] bounds how long a backend holds them.
const STATEMENT_CACHE: usize = 128;

/// Creates `database` through the maintenance database at `maintenance_url`; a concurrent
/// creator winning the race is fine.
pub async fn create_database_if_missing(
    maintenance_url: &str,
    database: &str,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::primitives::schema_name::is_valid_identifier(database),
        "invalid database name {database:?}"
    );
    let admin = open_pool(maintenance_url, 1).await?;
    let exists = admin
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [database.into()],
        ))
        .await?
        .is_some();
    if !exists {
        match admin
            .execute_unprepared(&format!("CREATE DATABASE \"{database}\""))
            .await
        {
            Ok(_) => tracing::info!(database, "created database"),
            Err(err) if is_duplicate_database(&err) => {}
            Err(err) => return Err(err).context("could not create the database"),
        }
    }
    admin.close().await?;
    Ok(())
}

fn is_duplicate_database(err: &DbErr) -> bool {
    // 42P04 duplicate_database
    err.to_string().contains("already exists")
}

/// A case-insensitive "contains" pattern for `lower(column) LIKE …`: the search text is data,
/// so its own `%`, `_` and `\` match themselves.
pub fn contains_pattern(search: &str) -> sea_orm::sea_query::LikeExpr {
    let escaped = search
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    sea_orm::sea_query::LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// Where a connection that keeps session state goes (a lock held for a whole batch, `LISTEN`):
/// `DATABASE_DIRECT_URL` when set, since a transaction-mode PgBouncer would hand the session to
/// other clients, else the pool's own server.
pub fn session_connect_options(
    config: &Config,
    pool: &pool::Pool,
) -> Result<sea_orm::sqlx::postgres::PgConnectOptions, sea_orm::sqlx::Error> {
    Ok(match &config.database_direct_url {
        Some(url) => url
            .expose_secret()
            .parse::<sea_orm::sqlx::postgres::PgConnectOptions>()?
            // Refused by a session-mode PgBouncer unless it ignores it; PostgreSQL 12 and newer
            // send every float exactly without it.
            .extra_float_digits(None),
        None => pool
            .get_postgres_connection_pool()
            .connect_options()
            .as_ref()
            .clone(),
    })
}

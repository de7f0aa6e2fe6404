//! The database servers tenants are placed on (`public.database_servers`): adding one (checked
//! by connecting to it), listing them with their tenant counts, draining one, and choosing the
//! server of a new tenant. The control database is the server [`CONTROL_SERVER`], always there,
//! never a row.
//!
//! A server's URL holds its password: it is read only to open the server's pool
//! ([`crate::db::servers`]) and never logged, audited or answered.

use std::time::Duration;

use chrono::Utc;
use entity::public::{database_servers, tenants};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseTransaction,
    DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, Statement, TransactionTrait,
};
use secrecy::SecretString;
use serde_json::json;

use crate::{
    audit::{self, Actor, Outcome},
    db::{
        Pool,
        pinned::begin_in_schema,
        servers::{CONTROL_SERVER, PLACEMENTS_DDL},
    },
    error::{AppError, AppResult, code_of},
    state::AppState,
    tenancy::{TenantStatus, migrator, registry::schema_of},
};

/// Longest server URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Most tenants a server's capacity may name.
pub const MAX_CAPACITY: i32 = 1_000_000;
/// URL query parameters a server URL may carry; others (`host=` pointing at a socket, …) are
/// refused rather than passed to the driver unexamined.
const URL_PARAMETERS: [&str; 2] = ["sslmode", "application_name"];
/// How long adding a server waits for it to answer.
const CONNECT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether placement may put new tenants on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// New tenants may be placed there.
    Active,
    /// Its tenants are served; no new tenant is placed there.
    Draining,
    /// Marked out of service by an operator: no new tenant is placed there.
    Down,
}

impl ServerState {
    pub fn as_db(self) -> &'static str {
        match self {
            ServerState::Active => "ACTIVE",
            ServerState::Draining => "DRAINING",
            ServerState::Down => "DOWN",
        }
    }

    fn from_db(value: &str) -> Self {
        match value {
            "DRAINING" => ServerState::Draining,
            "DOWN" => ServerState::Down,
            _ => ServerState::Active,
        }
    }
}

/// A server as operators see it: never its URL.
#[derive(Debug, Clone)]
pub struct ServerSummary {
    pub name: String,
    pub state: ServerState,
    /// `None`: no limit.
    pub capacity: Option<i32>,
    /// Live tenants placed there.
    pub tenants: i64,
    /// The control database (it holds the registry; it cannot be drained or removed).
    pub control: bool,
}

/// A server as asked for, before validation.
#[derive(Clone, Default)]
pub struct ServerDraft {
    pub name: String,
    pub url: String,
    pub capacity: Option<i32>,
}

/// Every server, the control database first, with its live tenants.
pub async fn list(db: &impl ConnectionTrait) -> AppResult<Vec<ServerSummary>> {
    let counts = tenant_counts(db).await?;
    let count_of = |name: Option<&str>| {
        counts
            .iter()
            .find(|(server, _)| server.as_deref() == name)
            .map_or(0, |(_, count)| *count)
    };
    let mut servers = vec![ServerSummary {
        name: CONTROL_SERVER.to_owned(),
        state: ServerState::Active,
        capacity: None,
        tenants: count_of(None),
        control: true,
    }];
    servers.extend(registered(db).await?.into_iter().map(|row| ServerSummary {
        tenants: count_of(Some(&row.name)),
        name: row.name,
        state: ServerState::from_db(&row.state),
        capacity: row.capacity,
        control: false,
    }));
    Ok(servers)
}

/// The data servers as registered, by name: without the control database and without tenant
/// counts, which read the whole registry.
pub async fn registered(db: &impl ConnectionTrait) -> AppResult<Vec<database_servers::Model>> {
    Ok(database_servers::Entity::find()
        .order_by_asc(database_servers::Column::Name)
        .all(db)
        .await?)
}

/// Live tenants per server (`None`: the control database).
async fn tenant_counts(db: &impl ConnectionTrait) -> AppResult<Vec<(Option<String>, i64)>> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT server_name, count(*) AS tenants FROM public.tenants \
              WHERE deleted_at IS NULL GROUP BY server_name",
        ))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "server_name")?, row.try_get("", "tenants")?)))
        .collect()
}

/// One server by name.
pub async fn find(db: &impl ConnectionTrait, name: &str) -> AppResult<ServerSummary> {
    list(db)
        .await?
        .into_iter()
        .find(|server| server.name == name)
        .ok_or_else(|| AppError::not_found("no such database server"))
}

/// Adds a server after connecting to it: it must answer, must not hold a tenantgraph registry
/// of its own (the control database, or another deployment's), and gets the registry mirror
/// its tenants' pins read (`public.tenant_placements`).
pub async fn add(
    state: &AppState,
    actor: &Actor,
    draft: &ServerDraft,
) -> Result<ServerSummary, Vec<AppError>> {
    let (name, url) = validate(draft)?;
    if database_servers::Entity::find_by_id(name.clone())
        .one(&state.db)
        .await
        .map_err(|e| vec![e.into()])?
        .is_some()
    {
        return Err(vec![AppError::conflict(
            "name",
            "a database server with this name already exists",
        )]);
    }
    prepare_server(&url).await.map_err(|e| vec![e])?;
    let now = Utc::now().fixed_offset();
    let txn = state.db.begin().await.map_err(|e| vec![e.into()])?;
    let inserted = database_servers::Entity::insert(database_servers::ActiveModel {
        name: Set(name.clone()),
        url: Set(url),
        state: Set(ServerState::Active.as_db().to_owned()),
        capacity: Set(draft.capacity),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(&txn)
    .await;
    if let Err(err) = inserted {
        return Err(vec![match AppError::from(err) {
            AppError::Conflict { .. } => {
                AppError::conflict("name", "a database server with this name already exists")
            }
            other => other,
        }]);
    }
    audit::record(
        &txn,
        actor,
        "server.add",
        None,
        Outcome::Success,
        json!({ "server": name, "capacity": draft.capacity }),
    )
    .await;
    txn.commit().await.map_err(|e| vec![e.into()])?;
    find(&state.db, &name).await.map_err(|e| vec![e])
}

/// Sets whether placement may use a server (`DRAINING` to stop placing tenants there).
pub async fn set_state(
    state: &AppState,
    actor: &Actor,
    name: &str,
    to: ServerState,
) -> AppResult<ServerSummary> {
    if name == CONTROL_SERVER {
        return Err(AppError::bad_input(
            "name",
            "the control database is always ACTIVE; give it no new tenants with CONTROL_SERVER_CAPACITY",
        ));
    }
    let txn = state.db.begin().await?;
    let changed = database_servers::Entity::update_many()
        .col_expr(
            database_servers::Column::State,
            sea_orm::sea_query::Expr::value(to.as_db()),
        )
        .col_expr(
            database_servers::Column::UpdatedAt,
            sea_orm::sea_query::Expr::current_timestamp(),
        )
        .filter(database_servers::Column::Name.eq(name))
        .exec(&txn)
        .await?;
    if changed.rows_affected == 0 {
        return Err(AppError::not_found("no such database server"));
    }
    audit::record(
        &txn,
        actor,
        "server.state",
        None,
        Outcome::Success,
        json!({ "server": name, "state": to.as_db() }),
    )
    .await;
    txn.commit().await?;
    find(&state.db, name).await
}

/// The server a new tenant goes to: `requested` when given (it must be ACTIVE and have room),
/// else the ACTIVE server with the fewest live tenants that has room and answered a moment ago
/// (the control database on a tie). `None` is the control database. `field` names the input at
/// fault.
pub async fn place(
    state: &AppState,
    requested: Option<&str>,
    field: &str,
) -> AppResult<Option<String>> {
    let control_capacity = state.config.control_server_capacity;
    // The control database without a limit, asked for or the only server: nothing to choose,
    // and no count of every live tenant (a scan of the registry per new tenant).
    if control_capacity.is_none() {
        let control_only = match requested.map(str::trim) {
            Some(name) => name == CONTROL_SERVER,
            None => database_servers::Entity::find()
                .one(&state.db)
                .await?
                .is_none(),
        };
        if control_only {
            return Ok(None);
        }
    }
    let servers = list(&state.db).await?;
    let has_room = |server: &ServerSummary| {
        let capacity = if server.control {
            control_capacity.map(i64::from)
        } else {
            server.capacity.map(i64::from)
        };
        capacity.is_none_or(|capacity| server.tenants < capacity)
    };
    let chosen = match requested.map(str::trim) {
        Some(name) => {
            let server = servers
                .iter()
                .find(|server| server.name == name)
                .ok_or_else(|| AppError::bad_input(field, "no such database server"))?;
            if server.state != ServerState::Active {
                return Err(AppError::bad_input(
                    field,
                    format!(
                        "the database server is {}: no new tenants go there",
                        server.state.as_db()
                    ),
                ));
            }
            if !has_room(server) {
                return Err(AppError::bad_input(
                    field,
                    "the database server is at its capacity",
                ));
            }
            server
        }
        None => servers
            .iter()
            .filter(|server| server.state == ServerState::Active && has_room(server))
            .filter(|server| server.control || !state.servers.is_unreachable(&server.name))
            .min_by_key(|server| (server.tenants, !server.control))
            .ok_or_else(|| {
                AppError::bad_input(field, "every database server is full, draining or down")
            })?,
    };
    Ok((!chosen.control).then(|| chosen.name.clone()))
}

/// The fields of `draft`, checked: one fault per field at fault.
fn validate(draft: &ServerDraft) -> Result<(String, String), Vec<AppError>> {
    let mut faults = Vec::new();
    let name = draft.name.trim().to_owned();
    if !is_server_name(&name) {
        faults.push(AppError::bad_input(
            "name",
            "a name is 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter",
        ));
    } else if name == CONTROL_SERVER {
        faults.push(AppError::bad_input(
            "name",
            "control is the name of the control database",
        ));
    }
    let url = draft.url.trim().to_owned();
    if let Err(message) = check_url(&url) {
        faults.push(AppError::bad_input("url", message));
    }
    if draft
        .capacity
        .is_some_and(|capacity| !(0..=MAX_CAPACITY).contains(&capacity))
    {
        faults.push(AppError::bad_input(
            "capacity",
            format!("capacity is 0 to {MAX_CAPACITY} tenants"),
        ));
    }
    if faults.is_empty() {
        Ok((name, url))
    } else {
        Err(faults)
    }
}

fn is_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A `postgres://` or `postgresql://` URL naming a host and a database, with no query
/// parameters but `URL_PARAMETERS`. The message never repeats the URL (it may hold a
/// password).
pub fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("url is required".into());
    }
    if url.len() > MAX_URL_BYTES {
        return Err(format!("url must be at most {MAX_URL_BYTES} bytes"));
    }
    let parsed = url::Url::parse(url).map_err(|_| "url is not a valid URL".to_owned())?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err("url must start with postgres:// or postgresql://".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("url must name the server's host".into());
    }
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err(
            "url must name a database (postgres://user:password@host:port/database)".into(),
        );
    }
    if let Some((key, _)) = parsed
        .query_pairs()
        .find(|(key, _)| !URL_PARAMETERS.contains(&key.as_ref()))
    {
        return Err(format!(
            "url parameter {:?} is not allowed; allowed: {}",
            key.chars().take(40).collect::<String>(),
            URL_PARAMETERS.join(", ")
        ));
    }
    Ok(())
}

/// Connects to a server being added, checks it, and creates its registry mirror.
async fn prepare_server(url: &str) -> AppResult<()> {
    let unreachable = |err: DbErr| {
        let reason = match code_of(&err).as_deref() {
            Some("28P01" | "28000") => "the server refused these credentials",
            Some("3D000") => "the database does not exist on that server",
            _ => "nothing answered as PostgreSQL at this URL",
        };
        AppError::bad_input("url", format!("could not connect: {reason}"))
    };
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(0)
        .connect_timeout(CONNECT_CHECK_TIMEOUT)
        .acquire_timeout(CONNECT_CHECK_TIMEOUT)
        .sqlx_logging(false);
    let db = Database::connect(options).await.map_err(unreachable)?;
    let checked = async {
        let holds_registry = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT to_regclass('public.database_servers') IS NOT NULL \
                     OR to_regclass('public.tenants') IS NOT NULL AS registry",
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "registry"))
            .transpose()?
            .unwrap_or(false);
        if holds_registry {
            return Err(AppError::bad_input(
                "url",
                "this database holds a tenantgraph registry (the control database, or another deployment's); a data server must be a database of its own",
            ));
        }
        db.execute_unprepared(PLACEMENTS_DDL).await?;
        Ok(())
    }
    .await;
    let _ = db.close().await;
    checked
}

/// Writes what the pins of `tenant` on its data server check (its id, schema and status as the
/// registry holds them), inside `db`, a transaction on that server.
pub async fn write_placement(
    db: &impl ConnectionTrait,
    tenant: &tenants::Model,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO public.tenant_placements (id, schema_name, status) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE \
            SET schema_name = excluded.schema_name, status = excluded.status, updated_at = now()",
        [
            tenant.id.into(),
            tenant.schema_name.clone().into(),
            tenant.status.as_db().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Sets the status the pins of `tenant` on its data server check (nothing for a tenant on the
/// control database, whose pins read the registry). Called before a change of the registry
/// that takes access away (fail-closed: while the server cannot be reached, the change is
/// refused with `SERVER_UNAVAILABLE`), and after one that gives it back.
pub async fn mark_placement(
    state: &AppState,
    tenant: &tenants::Model,
    status: TenantStatus,
) -> AppResult<()> {
    let Some(server) = tenant.server_name.as_deref() else {
        return Ok(());
    };
    let db = state.servers.pool(Some(server)).await?;
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE public.tenant_placements SET status = $2, updated_at = now() WHERE id = $1",
        [tenant.id.into(), status.as_db().into()],
    ))
    .await
    .map_err(|err| state.servers.failed(Some(server), err))?;
    Ok(())
}

/// Drops the schema of `tenant` on its data server with its placement, in one transaction
/// there (under the schema's migration lock).
pub async fn drop_placed_schema(state: &AppState, tenant: &tenants::Model) -> AppResult<()> {
    let server = tenant.server_name.as_deref();
    let db = state.servers.pool(server).await?;
    let schema = schema_of(tenant);
    let dropped = async {
        let txn = db.begin().await?;
        migrator::lock_schema(&txn, &schema).await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM public.tenant_placements WHERE id = $1",
            [tenant.id.into()],
        ))
        .await?;
        txn.execute_unprepared(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            schema.quoted()
        ))
        .await?;
        txn.commit().await
    }
    .await;
    dropped.map_err(|err| state.servers.failed(server, err))
}

/// The connection URL of server `name`, for PostgreSQL's client programs (`pg_dump`): it holds
/// the password, so it stays a secret.
pub async fn url_of(db: &impl ConnectionTrait, name: &str) -> AppResult<SecretString> {
    database_servers::Entity::find_by_id(name.to_owned())
        .one(db)
        .await?
        .map(|server| SecretString::from(server.url))
        .ok_or_else(|| AppError::not_found("no such database server"))
}

/// The pool of the server `tenant` lives on.
pub async fn pool_of(state: &AppState, tenant: &tenants::Model) -> AppResult<Pool> {
    state.servers.pool(tenant.server_name.as_deref()).await
}

/// A transaction pinned to the schema of `tenant` on its server and, when that is not the
/// control database, a transaction there for the registry's side of the change (else `None`:
/// the registry changes in the first one). End it with [`commit_placed`].
pub async fn begin_placed(
    state: &AppState,
    tenant: &tenants::Model,
) -> AppResult<(DatabaseTransaction, Option<DatabaseTransaction>)> {
    let server = tenant.server_name.as_deref();
    let db = pool_of(state, tenant).await?;
    let txn = begin_in_schema(&db, &schema_of(tenant))
        .await
        .map_err(|err| state.servers.failed(server, err))?;
    let elsewhere = match server {
        Some(_) => Some(state.db.begin().await?),
        None => None,
    };
    Ok((txn, elsewhere))
}

/// Commits what [`begin_placed`] began. On another server the placement is written as
/// `tenant` (the registry's row as the change leaves it) inside the schema's transaction, which
/// commits first: the pins there never run ahead of the registry, and a change that takes
/// access away (a migration below head parks the tenant) is fenced with the schema's change.
pub async fn commit_placed(
    txn: DatabaseTransaction,
    elsewhere: Option<DatabaseTransaction>,
    tenant: &tenants::Model,
) -> AppResult<()> {
    if elsewhere.is_some() {
        write_placement(&txn, tenant).await?;
    }
    txn.commit().await?;
    if let Some(registry) = elsewhere {
        registry.commit().await?;
    }
    Ok(())
}

/// The live tenants placed on `server` (`None`: the control database).
pub async fn tenants_on(
    db: &impl ConnectionTrait,
    server: Option<&str>,
) -> AppResult<Vec<tenants::Model>> {
    let placed = match server.filter(|name| *name != CONTROL_SERVER) {
        Some(name) => tenants::Column::ServerName.eq(name),
        None => tenants::Column::ServerName.is_null(),
    };
    Ok(tenants::Entity::find()
        .filter(tenants::Column::DeletedAt.is_null())
        .filter(placed)
        .order_by_asc(tenants::Column::CreatedAt)
        .all(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_postgres_urls_with_a_host_and_a_database() {
        assert!(check_url("postgres://app:secret@127.0.0.1:5432/tenants").is_ok());
        assert!(check_url("postgresql://app@localhost/tenants?sslmode=require").is_ok());
        for refused in [
            "",
            "mysql://app@127.0.0.1/tenants",
            "http://127.0.0.1/tenants",
            "postgres:///tenants?host=/var/run/postgresql",
            "postgres://127.0.0.1:5432/",
            "postgres://127.0.0.1/tenants?host=/tmp",
            "postgres://127.0.0.1/tenants?options=-c%20search_path%3Dx",
            "not a url",
        ] {
            assert!(check_url(refused).is_err(), "{refused:?} was accepted");
        }
        let message = check_url("postgres://app:hunter2@127.0.0.1/db?passfile=x").unwrap_err();
        assert!(!message.contains("hunter2"));
    }

    #[test]
    fn server_names_are_short_lowercase_identifiers() {
        assert!(is_server_name("eu-west_2"));
        for refused in ["", "2nd", "Eu", "a b", "a;drop", &"a".repeat(64)] {
            assert!(!is_server_name(refused), "{refused:?} was accepted");
        }
    }
}

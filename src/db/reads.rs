//! Connections of their own for gated reads ([`super::pinned::read_as_owner`]), shared by the
//! reads that run at the same time: their statements are pipelined.
//!
//! A gated read is one statement outside any transaction, so reads need not take turns on a
//! connection: each connection here is a `tokio_postgres` client, which writes every statement
//! sent to it as soon as it is sent, and PostgreSQL answers them in order. Under load a
//! backend finds the next statement already waiting when it has answered one, and one write
//! and one read carry several requests' statements, where a connection taken and handed back
//! per read costs a wake-up of the backend and of the server per request (and sqlx's pool one
//! more `Sync` round trip each time it takes a connection back). So reads gather on few
//! connections: a read goes to the first one carrying fewer than `PIPELINE_DEPTH` reads,
//! unless that one has answered nothing for `STALLED_AFTER` (a slow statement holds up the
//! reads behind it); another connection is opened, up to as many as the pool has, only when
//! none takes more. Their statement caches hold the tenants' reads only: the transactions'
//! statements do not push them out.
//!
//! A read given up before its answer (the request was cancelled) leaves its statement running
//! on the backend, in front of any read sent after it: its connection takes no further reads,
//! and once the reads it still carries are answered, the statement is cancelled and the
//! connection closed.
//!
//! Straight to PostgreSQL without TLS only: behind PgBouncer, or to another machine unless
//! the URL says `sslmode=disable`, a gated read takes the pool's way.

use std::{
    collections::BTreeMap,
    fmt,
    num::NonZeroUsize,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use lru::LruCache;
use sea_orm::{ConnAcquireErr, DbErr, ProxyRow, QueryResult, RuntimeErr, Statement, Value};
use sea_query_postgres::{PostgresValue, PostgresValues};
use tokio_postgres::{
    Client, Config, NoTls, Row,
    config::{Host, SslMode},
    error::{DbError, SqlState},
    types::Type,
};

use super::{CONNECTION_LIFETIME, IDLE_TIMEOUT, STATEMENT_CACHE};

/// Up to `size` connections, opened when needed, each renewed after the same lifetime as the
/// pool's (why: see `CONNECTION_LIFETIME` in `db`) and closed after as long unused as the
/// pool's idle ones.
#[derive(Clone)]
pub struct ReadConnections {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    slots: Box<[Slot]>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Slot {
    connection: Mutex<Option<Arc<Connection>>>,
    /// Held while a connection is opened for this slot: concurrent reads wait for that one.
    opening: tokio::sync::Mutex<()>,
}

impl fmt::Debug for ReadConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open = self
            .inner
            .slots
            .iter()
            .filter(|slot| slot.connection.lock().expect("slot lock").is_some());
        f.debug_struct("ReadConnections")
            .field("size", &self.inner.slots.len())
            .field("open", &open.count())
            .finish()
    }
}

impl ReadConnections {
    /// Connections to the database at `url` like the pool's (`search_path` without a schema
    /// of ours, generic plans: see `straight_pool_options` in `db`), `size` at most, each
    /// opened within `connect_timeout`. These connections do not speak TLS: `None` (the reads
    /// take the pool's way) unless `url` says `sslmode=disable` or names only this machine,
    /// and when it is not a URL `tokio_postgres` reads.
    pub(crate) fn for_url(url: &str, size: u32, connect_timeout: Duration) -> Option<Self> {
        let mut config = match Config::from_str(url) {
            Ok(config) => config,
            Err(err) => {
                tracing::info!(error = %err, "gated reads use the pool: its URL is not one for read connections");
                return None;
            }
        };
        if config.get_ssl_mode() != SslMode::Disable && !only_this_machine(&config) {
            tracing::info!("gated reads use the pool: it may speak TLS to another machine");
            return None;
        }
        let options = [
            config.get_options().unwrap_or_default(),
            "-c search_path=pg_catalog -c plan_cache_mode=force_generic_plan",
        ]
        .join(" ");
        config
            .options(options.trim())
            .ssl_mode(SslMode::Disable)
            .connect_timeout(connect_timeout);
        let slots = (0..size.max(1)).map(|_| Slot::default()).collect();
        let inner = Arc::new(Inner {
            config,
            slots,
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut sweeps = tokio::time::interval(SWEEP_EVERY);
            loop {
                sweeps.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                for slot in &inner.slots {
                    // Lets go of a connection that takes no more reads once it carries none.
                    slot.usable();
                }
            }
        });
        Some(ReadConnections { inner })
    }

    /// Runs `statement` (one statement, outside any transaction) and returns its rows.
    pub async fn query_all(&self, statement: &Statement) -> Result<Vec<Row>, ReadError> {
        let values = PostgresValues(
            statement
                .values
                .iter()
                .flat_map(|values| values.0.iter().cloned())
                .map(|value| bound(value).map(PostgresValue))
                .collect::<Result<_, _>>()
                .map_err(ReadError::Failed)?,
        );
        let mut retried = false;
        loop {
            let connection = self.connection().await?;
            let reading = Reading::on(&connection);
            let rows = connection.query(&statement.sql, &values).await;
            reading.answered();
            match rows {
                Ok(rows) => return Ok(rows),
                // The connection ended between being chosen and being written to (the server
                // closed it meanwhile): a read can be sent again, once, on another.
                Err(err) if connection.client.is_closed() && !retried => {
                    tracing::debug!(error = %err, "a read connection had ended; reading again");
                    retried = true;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Closes every connection once its reads are answered; further reads fail.
    pub(crate) fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        for slot in &self.inner.slots {
            slot.connection.lock().expect("slot lock").take();
        }
    }

    /// The first connection that takes more reads (see [`Connection::takes_more`]); else a new
    /// one while there is room for another; else the one with the fewest reads under way.
    async fn connection(&self) -> Result<Arc<Connection>, ReadError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ReadError::Failed(DbErr::ConnectionAcquire(
                ConnAcquireErr::ConnectionClosed,
            )));
        }
        let mut least_busy: Option<Arc<Connection>> = None;
        let mut vacant = None;
        for (index, slot) in self.inner.slots.iter().enumerate() {
            match slot.usable() {
                Some(connection) if connection.takes_more() => return Ok(connection),
                Some(connection) => {
                    if least_busy
                        .as_ref()
                        .is_none_or(|least| connection.reads() < least.reads())
                    {
                        least_busy = Some(connection);
                    }
                }
                None => {
                    vacant.get_or_insert(index);
                }
            }
        }
        match (least_busy, vacant) {
            // Another read is opening that one: no need to wait for it.
            (Some(busy), Some(index)) if self.inner.slots[index].opening.try_lock().is_err() => {
                Ok(busy)
            }
            (busy, Some(index)) => match self.open(index).await {
                Ok(opened) => Ok(opened),
                Err(err) => busy.ok_or(err),
            },
            (Some(busy), None) => Ok(busy),
            (None, None) => unreachable!("a slot without a usable connection is vacant"),
        }
    }

    async fn open(&self, index: usize) -> Result<Arc<Connection>, ReadError> {
        let slot = &self.inner.slots[index];
        let _opening = slot.opening.lock().await;
        if let Some(opened) = slot.usable() {
            return Ok(opened);
        }
        let (client, connection) =
            self.inner.config.connect(NoTls).await.map_err(|err| {
                ReadError::Failed(DbErr::Conn(RuntimeErr::Internal(err.to_string())))
            })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "a read connection ended");
            }
        });
        let opened = Arc::new(Connection::new(client));
        // A connection this one replaces closes once the reads it carries are answered.
        *slot.connection.lock().expect("slot lock") = Some(opened.clone());
        Ok(opened)
    }
}

/// Whether every host `config` names is a loopback address or a Unix socket, where a plain
/// connection travels no network.
fn only_this_machine(config: &Config) -> bool {
    let loopback = |host: &str| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    };
    config
        .get_hostaddrs()
        .iter()
        .all(|address| address.is_loopback())
        && config.get_hosts().iter().all(|host| match host {
            Host::Tcp(name) => loopback(name),
            Host::Unix(_) => true,
        })
}

/// Reads one connection carries at once before a read goes to another. On two cores shared
/// with PostgreSQL, one connection carrying sixteen answered a third more requests than four
/// sharing them (BENCHMARKS.md, "Reads pipelined on shared connections"): a backend that
/// finds statements waiting answers them without sleeping in between.
const PIPELINE_DEPTH: usize = 16;

/// A connection whose reads have had no answer for this long is stuck behind a slow one: new
/// reads go to another instead of waiting in line (a gated read of a page takes well under
/// a millisecond).
const STALLED_AFTER: Duration = Duration::from_millis(2);

/// How often connections worn out while idle are closed.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

impl Slot {
    /// The slot's connection if it takes reads. One that does not, with no read under way, is
    /// let go at once (closed, and a read given up on it cancelled: see `Drop`).
    fn usable(&self) -> Option<Arc<Connection>> {
        let mut connection = self.connection.lock().expect("slot lock");
        match connection.as_ref() {
            Some(open) if open.usable() => Some(open.clone()),
            Some(open) if open.reads() == 0 => {
                connection.take();
                None
            }
            _ => None,
        }
    }
}

struct Connection {
    client: Client,
    opened: Instant,
    /// Reads sent and not yet answered.
    reads: AtomicUsize,
    /// Set when a read was given up before its answer: see the module documentation.
    abandoned: AtomicBool,
    /// When the last answer came, or the first read after a quiet spell was sent: how long
    /// the connection has been idle, or stalled (see [`Connection::takes_more`]).
    last_used: Mutex<Instant>,
    statements: Mutex<LruCache<String, tokio_postgres::Statement>>,
}

impl Connection {
    fn new(client: Client) -> Self {
        let now = Instant::now();
        Connection {
            client,
            opened: now,
            reads: AtomicUsize::new(0),
            abandoned: AtomicBool::new(false),
            last_used: Mutex::new(now),
            statements: Mutex::new(LruCache::new(
                NonZeroUsize::new(STATEMENT_CACHE).expect("a cache of some size"),
            )),
        }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::Acquire)
    }

    /// Whether a read sent now would wait for few others: fewer than [`PIPELINE_DEPTH`] under
    /// way, and an answer (or the first read) within [`STALLED_AFTER`] if any are.
    fn takes_more(&self) -> bool {
        match self.reads() {
            0 => true,
            reads => {
                reads < PIPELINE_DEPTH
                    && self.last_used.lock().expect("last used").elapsed() < STALLED_AFTER
            }
        }
    }

    fn usable(&self) -> bool {
        !self.client.is_closed()
            && !self.abandoned.load(Ordering::Acquire)
            && self.opened.elapsed() < CONNECTION_LIFETIME
            && (self.reads() > 0
                || self.last_used.lock().expect("last used").elapsed() < IDLE_TIMEOUT)
    }

    /// Runs `sql` with `values`, prepared on this connection the first time (a statement the
    /// cache pushes out is closed on the server as it is dropped).
    async fn query(
        &self,
        sql: &str,
        values: &PostgresValues,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let cached = self
            .statements
            .lock()
            .expect("statements")
            .get(sql)
            .cloned();
        let prepared = match cached {
            Some(prepared) => prepared,
            None => {
                let prepared = self.client.prepare_typed(sql, &values.as_types()).await?;
                self.statements
                    .lock()
                    .expect("statements")
                    .put(sql.to_owned(), prepared.clone());
                prepared
            }
        };
        self.client.query(&prepared, &values.as_params()).await
    }
}

impl Drop for Connection {
    /// A statement given up half-way may still run: once nothing else is under way on the
    /// connection (the last read holding it is gone), cancelling it can hit nothing else.
    fn drop(&mut self) {
        // (A runtime shutting down drops its tasks and their connections: nothing to cancel.)
        if let (true, Ok(runtime)) = (
            self.abandoned.load(Ordering::Acquire),
            tokio::runtime::Handle::try_current(),
        ) {
            let cancel = self.client.cancel_token();
            runtime.spawn(async move {
                if let Err(err) = cancel.cancel_query(NoTls).await {
                    tracing::debug!(error = %err, "could not cancel a read given up");
                }
            });
        }
    }
}

/// A read under way on a connection. Dropped before [`answered`](Self::answered), the
/// connection takes no further reads (see the module documentation).
struct Reading<'a> {
    connection: &'a Connection,
    answered: bool,
}

impl<'a> Reading<'a> {
    fn on(connection: &'a Connection) -> Self {
        if connection.reads.fetch_add(1, Ordering::AcqRel) == 0 {
            // Stalled is measured from here while nothing has been answered since.
            *connection.last_used.lock().expect("last used") = Instant::now();
        }
        Reading {
            connection,
            answered: false,
        }
    }

    fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.connection.abandoned.store(true, Ordering::Release);
        }
        *self.connection.last_used.lock().expect("last used") = Instant::now();
        self.connection.reads.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a read has no rows: PostgreSQL refused its statement (with an SQLSTATE to look at), or
/// anything else.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0} (SQLSTATE {code})", code = .0.code().code())]
    Refused(Box<DbError>),
    #[error(transparent)]
    Failed(DbErr),
}

impl ReadError {
    /// The SQLSTATE PostgreSQL refused the statement with.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            ReadError::Refused(refusal) => Some(refusal.code()),
            ReadError::Failed(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for ReadError {
    fn from(err: tokio_postgres::Error) -> Self {
        match err.as_db_error() {
            Some(refusal) => ReadError::Refused(Box::new(refusal.clone())),
            None if err.is_closed() => {
                ReadError::Failed(DbErr::Conn(RuntimeErr::Internal(err.to_string())))
            }
            None => ReadError::Failed(DbErr::Query(RuntimeErr::Internal(err.to_string()))),
        }
    }
}

impl From<ReadError> for DbErr {
    /// A refusal's SQLSTATE stays in its text, for the checks of `crate::error` to find; a
    /// server refusing because it is going away (class 08, 57P01 to 57P03) has ended the
    /// connection, as a lost one has.
    fn from(err: ReadError) -> Self {
        let ending = err.code().is_some_and(|code| {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P0")
        });
        match err {
            ReadError::Failed(err) => err,
            refused if ending => DbErr::Conn(RuntimeErr::Internal(refused.to_string())),
            refused => DbErr::Query(RuntimeErr::Internal(refused.to_string())),
        }
    }
}

/// `value` as it is bound: with the type sqlx gives it (`sea_query_postgres` declares each
/// value's type from its variant, but writes unsigned and one-byte integers in an encoding of
/// another type, and declares times in UTC without their zone), or refused.
fn bound(value: Value) -> Result<Value, DbErr> {
    use sea_orm::sea_query::ArrayType;
    Ok(match value {
        Value::TinyInt(v) => Value::SmallInt(v.map(i16::from)),
        Value::TinyUnsigned(v) => Value::SmallInt(v.map(i16::from)),
        Value::SmallUnsigned(v) => Value::Int(v.map(i32::from)),
        Value::Unsigned(v) => Value::BigInt(v.map(i64::from)),
        Value::BigUnsigned(v) => Value::BigInt(
            v.map(i64::try_from)
                .transpose()
                .map_err(|_| DbErr::Type("an unsigned value beyond a bigint".into()))?,
        ),
        Value::ChronoDateTimeUtc(v) => {
            Value::ChronoDateTimeWithTimeZone(v.map(|at| at.fixed_offset()))
        }
        Value::ChronoDateTimeLocal(v) => {
            Value::ChronoDateTimeWithTimeZone(v.map(|at| at.fixed_offset()))
        }
        Value::Char(_)
        | Value::Array(
            ArrayType::TinyInt
            | ArrayType::TinyUnsigned
            | ArrayType::SmallUnsigned
            | ArrayType::Unsigned
            | ArrayType::BigUnsigned
            | ArrayType::Char
            | ArrayType::ChronoDateTimeUtc
            | ArrayType::ChronoDateTimeLocal,
            _,
        ) => {
            return Err(DbErr::Type(format!(
                "{value:?} is not bound in a gated read"
            )));
        }
        value => value,
    })
}

/// A row as SeaORM's proxy row: its values by column name. Reading it by index follows the
/// names' order, not the statement's, so such rows are read by name.
pub(crate) fn row_of(row: &Row) -> Result<QueryResult, DbErr> {
    let mut values = BTreeMap::new();
    for (index, column) in row.columns().iter().enumerate() {
        let value = value_of(row, index, column.type_())
            .map_err(|err| DbErr::Type(format!("column {:?}: {err}", column.name())))?;
        values.insert(column.name().to_owned(), value);
    }
    Ok(ProxyRow::new(values).into())
}

/// The value at `index` of `row`, of PostgreSQL type `ty`, as SeaORM's value of that type.
fn value_of(row: &Row, index: usize, ty: &Type) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(match *ty {
        Type::BOOL => Value::Bool(row.try_get(index)?),
        Type::INT2 => Value::SmallInt(row.try_get(index)?),
        Type::INT4 => Value::Int(row.try_get(index)?),
        Type::INT8 => Value::BigInt(row.try_get(index)?),
        Type::FLOAT4 => Value::Float(row.try_get(index)?),
        Type::FLOAT8 => Value::Double(row.try_get(index)?),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            Value::String(row.try_get(index)?)
        }
        Type::BYTEA => Value::Bytes(row.try_get(index)?),
        Type::UUID => Value::Uuid(row.try_get(index)?),
        Type::DATE => Value::ChronoDate(row.try_get(index)?),
        Type::TIME => Value::ChronoTime(row.try_get(index)?),
        Type::TIMESTAMP => Value::ChronoDateTime(row.try_get(index)?),
        Type::TIMESTAMPTZ => Value::ChronoDateTimeWithTimeZone(
            row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(index)?
                .map(|at| at.fixed_offset()),
        ),
        Type::JSON | Type::JSONB => Value::Json(
            row.try_get::<_, Option<serde_json::Value>>(index)?
                .map(Box::new),
        ),
        _ => return Err(format!("type {ty} is not read here").into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn read_connections_are_plain_only_where_no_network_is_crossed() {
        for here in [
            "postgres://app:secret@127.0.0.1:5432/app",
            "postgres://app@localhost/app",
            "postgres://app@[::1]:5432/app",
            "postgres://app@127.0.0.2/app",
            "host=/run/postgresql user=app dbname=app",
        ] {
            assert!(ReadConnections::for_url(here, 2, WAIT).is_some(), "{here}");
        }
        // Any other host (here the unspecified address) only when TLS is declined outright.
        assert!(ReadConnections::for_url("postgres://app@0.0.0.0/app", 2, WAIT).is_none());
        assert!(
            ReadConnections::for_url("postgres://app@0.0.0.0/app?sslmode=require", 2, WAIT)
                .is_none()
        );
        assert!(
            ReadConnections::for_url("postgres://app@0.0.0.0/app?sslmode=disable", 2, WAIT)
                .is_some()
        );
        // A URL only sqlx reads leaves the reads to the pool.
        assert!(
            ReadConnections::for_url(
                "postgres://app@127.0.0.1/app?statement-cache-capacity=10",
                2,
                WAIT
            )
            .is_none()
        );
    }

    #[test]
    fn values_are_bound_with_the_types_sqlx_gives_them() {
        assert_eq!(
            bound(Value::BigUnsigned(Some(20))).unwrap(),
            Value::BigInt(Some(20))
        );
        assert!(bound(Value::BigUnsigned(Some(u64::MAX))).is_err());
        assert_eq!(
            bound(Value::TinyInt(Some(-3))).unwrap(),
            Value::SmallInt(Some(-3))
        );
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            bound(Value::ChronoDateTimeUtc(Some(at))).unwrap(),
            Value::ChronoDateTimeWithTimeZone(Some(at.fixed_offset()))
        );
        assert_eq!(
            bound(Value::String(Some("kept".into()))).unwrap(),
            Value::String(Some("kept".into()))
        );
    }
}

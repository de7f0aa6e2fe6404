//! Every PostgreSQL advisory lock tenantgraph takes: its key and the SQL that takes it, so that
//! two places meaning the same lock cannot drift apart.
//!
//! Text keys are hashed by PostgreSQL (`hashtextextended(key, 0)`) and bound as parameters.

use uuid::Uuid;

use crate::primitives::schema_name::SchemaName;

/// Serialises public migrations across servers; held by the migrating transaction.
pub const PUBLIC_MIGRATIONS: i64 = 0x7465_6e61_6e74_0001;

/// The key of a schema's migration lock: everything that changes the structure of one tenant
/// schema holds it for its transaction.
pub fn schema_key(schema: &SchemaName) -> String {
    format!("tenantgraph.migrate.{schema}")
}

/// The key of the lock taken while a move of the tenant is checked and recorded: two moves
/// asked for at once are not both started.
pub fn move_key(tenant_id: Uuid) -> String {
    format!("tenantgraph.move.{tenant_id}")
}

/// The key of a batch's lock: held, for a session, by the live server that runs the batch.
pub fn batch_key(batch_id: Uuid) -> String {
    format!("tenantgraph.batch.{batch_id}")
}

/// SQL for [`batch_key`] of the uuid in `column`.
pub fn batch_key_sql(column: &str) -> String {
    format!("('tenantgraph.batch.' || {column}::text)")
}

/// SQL that is true when some session of this database holds the session lock of the text key
/// `key_sql` (an SQL expression), as seen in `pg_locks`: a 64-bit key shows as its high and low
/// halves in `classid` and `objid`, with `objsubid` 1.
pub fn session_lock_held(key_sql: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1 \
         AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended({key_sql}, 0))"
    )
}

/// Which advisory lock function takes a text key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Wait for the lock; release it with the transaction.
    Transaction,
    /// Take it only if free (a `bool`); release it with the transaction.
    TryTransaction,
    /// Wait for the lock; release it with the session.
    Session,
    /// Take it only if free (a `bool`); release it with the session.
    TrySession,
}

/// SQL taking the lock whose text key is bound at parameter `$param`.
pub fn take(how: Take, param: u8) -> String {
    take_key(how, &format!("${param}"))
}

/// SQL taking the lock whose text key is the SQL expression `key_sql` (a parameter, or a literal
/// in a simple query).
pub fn take_key(how: Take, key_sql: &str) -> String {
    let function = match how {
        Take::Transaction => "pg_advisory_xact_lock",
        Take::TryTransaction => "pg_try_advisory_xact_lock",
        Take::Session => "pg_advisory_lock",
        Take::TrySession => "pg_try_advisory_lock",
    };
    format!("{function}(hashtextextended({key_sql}, 0))")
}

/// SQL taking the public migrations lock for the transaction.
pub fn take_public_migrations() -> String {
    format!("pg_advisory_xact_lock({PUBLIC_MIGRATIONS})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_sql_keep_their_historic_form() {
        let schema = SchemaName::parse("tenant_a").unwrap();
        assert_eq!(schema_key(&schema), "tenantgraph.migrate.tenant_a");
        assert_eq!(
            take(Take::Transaction, 3),
            "pg_advisory_xact_lock(hashtextextended($3, 0))"
        );
        assert_eq!(
            take_public_migrations(),
            format!("pg_advisory_xact_lock({})", 0x7465_6e61_6e74_0001_i64)
        );
    }
}

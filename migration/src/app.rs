//! An application's tenant migrations, appended after the built-in ones, and the permissions
//! its migrations seed.
//!
//! [`MigratorTrait`] is static: the migrator cannot be handed a set at run time. So the
//! application registers its set once per process, before anything reads the tenant migrations;
//! [`crate::TenantMigrator`] and [`crate::tenant_migration_names`] read it from then on.

use std::{collections::HashSet, fmt, sync::OnceLock};

use sea_orm_migration::{
    prelude::*,
    sea_orm::{
        ConnectionTrait,
        sea_query::{PostgresQueryBuilder, QueryBuilder},
    },
};

/// An application's tenant migrations and the tables they create.
#[derive(Clone, Copy)]
pub struct AppMigrations {
    /// The migrations, oldest first; applied after the built-in ones, recorded in the same
    /// `seaql_migrations` ledger of each tenant schema.
    pub migrations: fn() -> Vec<Box<dyn MigrationTrait>>,
    /// The tables a schema at head has from these migrations: health and `missingTables` check
    /// for them as for the built-in ones.
    pub tables: &'static [&'static str],
}

impl AppMigrations {
    /// No migrations of an application: the built-in server.
    pub const NONE: AppMigrations = AppMigrations {
        migrations: Vec::new,
        tables: &[],
    };

    pub(crate) fn migrations(&self) -> Vec<Box<dyn MigrationTrait>> {
        (self.migrations)()
    }

    pub(crate) fn tables(&self) -> impl Iterator<Item = &'static str> {
        self.tables.iter().copied()
    }

    fn names(&self) -> Vec<String> {
        self.migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect()
    }
}

/// Why [`register_app_migrations`] refused a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError(String);

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RegistrationError {}

static REGISTERED: OnceLock<AppMigrations> = OnceLock::new();

/// The registered set; from the first call on, fixed for the process (none when nothing was
/// registered before).
pub(crate) fn registered() -> &'static AppMigrations {
    REGISTERED.get_or_init(|| AppMigrations::NONE)
}

/// Appends `app` to the tenant migrations of this process. Call it before anything reads them
/// (`tenantgraph`'s application builder does). Registering the same set again is fine;
/// another set, or any set once the built-in one alone was read, is an error, as are names that
/// repeat (a built-in one's included) and tables the built-in migrations own.
pub fn register_app_migrations(app: AppMigrations) -> Result<(), RegistrationError> {
    let names = app.names();
    check(&names, app.tables)?;
    let current = REGISTERED.get_or_init(|| app);
    if current.names() == names && current.tables == app.tables {
        Ok(())
    } else {
        Err(RegistrationError(format!(
            "the tenant migrations of this process are already fixed ({} of an application); \
             register one set, once, before anything runs",
            current.names().len()
        )))
    }
}

fn check(names: &[String], tables: &[&str]) -> Result<(), RegistrationError> {
    let mut seen: HashSet<String> = crate::tenant::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    for name in names {
        if name.is_empty() || !seen.insert(name.clone()) {
            return Err(RegistrationError(format!(
                "tenant migration name {name:?} is empty or already taken"
            )));
        }
    }
    let mut seen_tables: HashSet<&str> = crate::TENANT_TABLES.iter().copied().collect();
    for table in tables {
        let plain = table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && table
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain || !seen_tables.insert(table) {
            return Err(RegistrationError(format!(
                "tenant table {table:?} is not a plain lower-case name, or is already taken"
            )));
        }
    }
    Ok(())
}

/// A permission an application declares: its code (`area:action`), what it allows, and the
/// seeded roles (`admin`, `member`, `viewer`, or a template's) that get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionSeed {
    pub code: &'static str,
    pub description: &'static str,
    pub roles: &'static [&'static str],
}

/// Adds `seeds` to the schema being migrated: the permissions and their grants to the roles
/// present. For an application migration's `up`; idempotent. The values are written into the
/// SQL, so the step can be pre-rendered like the built-in ones.
pub async fn seed_permissions(
    manager: &SchemaManager<'_>,
    seeds: &[PermissionSeed],
) -> Result<(), DbErr> {
    if seeds.is_empty() {
        return Ok(());
    }
    let db = manager.get_connection();
    let permissions = seeds
        .iter()
        .map(|seed| format!("({}, {})", literal(seed.code), literal(seed.description)))
        .collect::<Vec<_>>()
        .join(", ");
    db.execute_unprepared(&format!(
        "INSERT INTO permissions (code, description) VALUES {permissions} ON CONFLICT DO NOTHING"
    ))
    .await?;
    let grants: Vec<String> = seeds
        .iter()
        .flat_map(|seed| {
            seed.roles
                .iter()
                .map(|role| format!("({}, {})", literal(role), literal(seed.code)))
        })
        .collect();
    if !grants.is_empty() {
        // Joined on names: identity ids are not the same in every schema.
        db.execute_unprepared(&format!(
            "INSERT INTO role_permissions (role_id, permission_id) SELECT r.id, p.id \
             FROM (VALUES {}) AS g(role_name, permission_code) \
             JOIN roles r ON r.name = g.role_name \
             JOIN permissions p ON p.code = g.permission_code ON CONFLICT DO NOTHING",
            grants.join(", ")
        ))
        .await?;
    }
    Ok(())
}

/// Takes `seeds` away again (with every grant of them): for the `down` of the migration whose
/// `up` called [`seed_permissions`].
pub async fn unseed_permissions(
    manager: &SchemaManager<'_>,
    seeds: &[PermissionSeed],
) -> Result<(), DbErr> {
    if seeds.is_empty() {
        return Ok(());
    }
    let codes = seeds
        .iter()
        .map(|seed| literal(seed.code))
        .collect::<Vec<_>>()
        .join(", ");
    let db = manager.get_connection();
    db.execute_unprepared(&format!(
        "DELETE FROM role_permissions WHERE permission_id IN \
         (SELECT id FROM permissions WHERE code IN ({codes}))"
    ))
    .await?;
    db.execute_unprepared(&format!("DELETE FROM permissions WHERE code IN ({codes})"))
        .await?;
    Ok(())
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    PostgresQueryBuilder.value_to_string(&text.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tables_must_be_new_and_tables_plain() {
        let built_in = crate::tenant::migrations()[0].name().to_owned();
        assert!(check(&["m20990101_000001_a".into()], &["gifts"]).is_ok());
        assert!(check(&[built_in], &[]).is_err());
        assert!(check(&["m1".into(), "m1".into()], &[]).is_err());
        assert!(check(&["".into()], &[]).is_err());
        assert!(check(&[], &["person"]).is_err());
        assert!(check(&[], &["gifts", "gifts"]).is_err());
        for table in ["Gifts", "1gifts", "gifts; drop", "public.gifts", ""] {
            assert!(check(&[], &[table]).is_err(), "{table:?}");
        }
    }

    #[test]
    fn permission_values_are_quoted_as_sql_literals() {
        assert_eq!(literal("it's"), r"E'it\'s'");
    }
}

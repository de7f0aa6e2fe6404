//! Both migration sets against a real PostgreSQL: the public set down and up again on a fresh
//! database, and the tenant set in two schemas that each keep their own ledger.

use entity::{public, tenant};
use migration::sea_orm_migration::MigratorTrait;
use migration::{
    PUBLIC_TABLES, PublicMigrator, TENANT_TABLES, TenantMigrator, tenant_migration_names,
};
use sea_orm::prelude::{Date, Json};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, EntityTrait, ModelTrait, QueryFilter, QueryOrder, Set, Statement, TransactionTrait,
    Value,
};

use crate::helpers::TestDatabase;

const SCHEMA_A: &str = "schema_a";
const SCHEMA_B: &str = "schema_b";

#[tokio::test]
async fn public_and_tenant_migrations_apply_revert_and_reapply() {
    // A database of its own: the public set's `down` drops the registry.
    let database = TestDatabase::create().await;
    let db = tenantgraph::db::open_pool(&database.url, 2).await.unwrap();

    public_set(&db).await;
    tenant_set(&db).await;

    db.close().await.unwrap();
}

async fn public_set(db: &DatabaseConnection) {
    let names: Vec<String> = PublicMigrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    // Applied in the order of their names, which sort by date.
    assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "{names:?}");

    // The harness's database comes with the public set applied.
    assert_eq!(tables(db, "public").await, sorted(PUBLIC_TABLES));
    assert_eq!(applied(db, "public").await, names);
    // The public set runs as the server runs it: in a transaction whose search_path is `public`
    // (the pool's own search_path names no schema of ours).
    let txn = in_schema(db, "public").await;
    assert!(
        PublicMigrator::get_pending_migrations(&txn)
            .await
            .unwrap()
            .is_empty()
    );
    // Up again is a no-op.
    PublicMigrator::up(&txn, None).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(applied(db, "public").await, names);

    let txn = in_schema(db, "public").await;
    PublicMigrator::down(&txn, None).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(tables(db, "public").await, ["seaql_migrations"]);
    assert!(applied(db, "public").await.is_empty());

    let txn = in_schema(db, "public").await;
    PublicMigrator::up(&txn, None).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(tables(db, "public").await, sorted(PUBLIC_TABLES));
    assert_eq!(applied(db, "public").await, names);

    // CHECK constraints hold: the same rows with allowed values go in (and are rolled back).
    let txn = db.begin().await.unwrap();
    exec(
        &txn,
        "INSERT INTO public.tenants (tenant_name, domain, schema_name, email, status)
         VALUES ('x', 'x.test', 'tenant_x', 'a@x.test', 'ACTIVE')",
    )
    .await;
    exec(
        &txn,
        "INSERT INTO public.audit_events (actor_kind, action, outcome)
         VALUES ('SYSTEM', 'tenant.create', 'SUCCESS')",
    )
    .await;
    txn.rollback().await.unwrap();
    assert!(
        db.execute_unprepared(
            "INSERT INTO public.tenants (tenant_name, domain, schema_name, email, status)
             VALUES ('x', 'x.test', 'tenant_x', 'a@x.test', 'BOGUS')"
        )
        .await
        .is_err()
    );
    assert!(
        db.execute_unprepared(
            "INSERT INTO public.audit_events (actor_kind, action, outcome)
             VALUES ('SYSTEM', 'tenant.create', 'MAYBE')"
        )
        .await
        .is_err()
    );
}

async fn tenant_set(db: &DatabaseConnection) {
    let names = tenant_migration_names();
    assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "{names:?}");
    let person = names
        .iter()
        .position(|name| name.ends_with("create_person"))
        .expect("a migration creates person");
    let two_step_tables = sorted(&[
        "tenant_settings",
        "user_statuses",
        "roles",
        "users",
        "user_roles",
        "seaql_migrations",
    ]);

    for schema in [SCHEMA_A, SCHEMA_B] {
        exec(db, &format!("CREATE SCHEMA \"{schema}\"")).await;
    }
    // schema_a to head, schema_b two steps: each keeps its own ledger.
    let txn = in_schema(db, SCHEMA_A).await;
    TenantMigrator::up(&txn, None).await.unwrap();
    txn.commit().await.unwrap();
    let txn = in_schema(db, SCHEMA_B).await;
    TenantMigrator::up(&txn, Some(2)).await.unwrap();
    txn.commit().await.unwrap();

    assert_eq!(applied(db, SCHEMA_A).await, names);
    assert_eq!(tables(db, SCHEMA_A).await, sorted(TENANT_TABLES));
    assert_eq!(applied(db, SCHEMA_B).await, names[..2]);
    assert_eq!(tables(db, SCHEMA_B).await, two_step_tables);
    // Nothing leaked into the registry schema.
    assert_eq!(tables(db, "public").await, sorted(PUBLIC_TABLES));

    let txn = in_schema(db, SCHEMA_B).await;
    let pending: Vec<String> = TenantMigrator::get_pending_migrations(&txn)
        .await
        .unwrap()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(pending, names[2..]);
    assert_eq!(count(&txn, "user_statuses").await, 4);
    assert_eq!(role_names(&txn).await, ["admin", "member", "viewer"]);
    txn.rollback().await.unwrap();

    let txn = in_schema(db, SCHEMA_A).await;
    assert_seeded(&txn).await;
    entities_round_trip(&txn).await;
    txn.rollback().await.unwrap();

    // schema_a down to base and back; schema_b is untouched meanwhile.
    let txn = in_schema(db, SCHEMA_A).await;
    TenantMigrator::down(&txn, None).await.unwrap();
    txn.commit().await.unwrap();
    assert!(applied(db, SCHEMA_A).await.is_empty());
    assert_eq!(tables(db, SCHEMA_A).await, ["seaql_migrations"]);
    assert_eq!(applied(db, SCHEMA_B).await, names[..2]);
    assert_eq!(tables(db, SCHEMA_B).await, two_step_tables);

    let txn = in_schema(db, SCHEMA_A).await;
    TenantMigrator::up(&txn, None).await.unwrap();
    assert_seeded(&txn).await;
    txn.commit().await.unwrap();
    assert_eq!(applied(db, SCHEMA_A).await, names);
    assert_eq!(tables(db, SCHEMA_A).await, sorted(TENANT_TABLES));

    // schema_b to head, then one step back: only `person` goes.
    let txn = in_schema(db, SCHEMA_B).await;
    TenantMigrator::up(&txn, None).await.unwrap();
    assert_seeded(&txn).await;
    let steps_back_before_person = (names.len() - person) as u32;
    TenantMigrator::down(&txn, Some(steps_back_before_person))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(applied(db, SCHEMA_B).await, names[..person]);
    let mut without_person = sorted(TENANT_TABLES);
    without_person.retain(|t| t != "person");
    assert_eq!(tables(db, SCHEMA_B).await, without_person);
}

/// 4 statuses, 3 system roles, and the seeded role → permission grants.
async fn assert_seeded(txn: &DatabaseTransaction) {
    let statuses: Vec<(i16, String)> = tenant::user_statuses::Entity::find()
        .order_by_asc(tenant::user_statuses::Column::Id)
        .all(txn)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.code))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "active".to_owned()),
            (2, "inactive".to_owned()),
            (3, "suspended".to_owned()),
            (4, "pending".to_owned()),
        ]
    );

    let roles = tenant::roles::Entity::find()
        .order_by_asc(tenant::roles::Column::Name)
        .all(txn)
        .await
        .unwrap();
    assert!(roles.iter().all(|r| r.is_system));
    assert_eq!(role_names(txn).await, ["admin", "member", "viewer"]);

    let all = count(txn, "permissions").await;
    assert_eq!(all, 7);
    for (role, expected) in [
        ("admin", None),
        (
            "member",
            Some(vec![
                "people:read",
                "people:write",
                "roles:read",
                "settings:read",
                "users:read",
            ]),
        ),
        (
            "viewer",
            Some(vec![
                "people:read",
                "roles:read",
                "settings:read",
                "users:read",
            ]),
        ),
    ] {
        let role = roles.iter().find(|r| r.name == role).unwrap();
        let codes: Vec<String> = role
            .find_related(tenant::permissions::Entity)
            .order_by_asc(tenant::permissions::Column::Code)
            .all(txn)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.code)
            .collect();
        match expected {
            None => assert_eq!(codes.len() as i64, all, "admin has every permission"),
            Some(expected) => assert_eq!(codes, expected, "{} permissions", role.name),
        }
    }
}

/// Writes and reads every kind of column through the entities, inside a tenant transaction.
async fn entities_round_trip(txn: &DatabaseTransaction) {
    use tenant::{person, roles, tenant_settings, user_roles, user_statuses, users};

    let settings = tenant_settings::ActiveModel {
        display_name: Set("Acme".to_owned()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .unwrap();
    assert!(settings.id);
    assert_eq!(settings.features, Json::Array(Vec::new()));
    assert_eq!(settings.timezone, "UTC");
    // The singleton rejects a second row and a `false` key alike.
    txn.execute_unprepared("SAVEPOINT singleton").await.unwrap();
    assert!(
        txn.execute_unprepared(
            "INSERT INTO tenant_settings (id, display_name) VALUES (false, 'x')"
        )
        .await
        .is_err()
    );
    txn.execute_unprepared("ROLLBACK TO SAVEPOINT singleton")
        .await
        .unwrap();

    let user = users::ActiveModel {
        email: Set("ada@acme.test".to_owned()),
        name: Set(Some("Ada".to_owned())),
        ..Default::default()
    }
    .insert(txn)
    .await
    .unwrap();
    let status = user
        .find_related(user_statuses::Entity)
        .one(txn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code, "active");

    let admin = roles::Entity::find()
        .filter(roles::Column::Name.eq("admin"))
        .one(txn)
        .await
        .unwrap()
        .unwrap();
    user_roles::ActiveModel {
        user_id: Set(user.id),
        role_id: Set(admin.id),
    }
    .insert(txn)
    .await
    .unwrap();
    let user_role_names: Vec<String> = user
        .find_related(roles::Entity)
        .all(txn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(user_role_names, ["admin"]);

    let person = person::ActiveModel {
        first_name: Set("Grace".to_owned()),
        last_name: Set("Hopper".to_owned()),
        birth_date: Set(Date::from_ymd_opt(1906, 12, 9)),
        created_by: Set(Some(user.id)),
        ..Default::default()
    }
    .insert(txn)
    .await
    .unwrap();
    assert_eq!(person.membership_status, "member");
    let creator = person
        .find_related(users::Entity)
        .one(txn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creator.id, user.id);

    // Deleting the user cascades to user_roles and nulls person.created_by.
    user.delete(txn).await.unwrap();
    assert_eq!(count(txn, "user_roles").await, 0);
    let person = person::Entity::find_by_id(person.id)
        .one(txn)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(person.created_by, None);

    // The registry entities are schema-qualified, so they work with the tenant search_path.
    let registered = public::tenants::ActiveModel {
        tenant_name: Set("Acme".to_owned()),
        domain: Set("acme.test".to_owned()),
        schema_name: Set(SCHEMA_A.to_owned()),
        email: Set("ops@acme.test".to_owned()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .unwrap();
    assert_eq!(registered.status.as_db(), "PENDING");
    assert_eq!(registered.settings, Json::Object(Default::default()));
    assert!(!registered.schema_provisioned);
    let event = public::audit_events::ActiveModel {
        actor_kind: Set("SYSTEM".to_owned()),
        action: Set("tenant.create".to_owned()),
        tenant_id: Set(Some(registered.id)),
        outcome: Set("SUCCESS".to_owned()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .unwrap();
    assert!(event.id > 0);
    public::platform_users::ActiveModel {
        email: Set("root@platform.test".to_owned()),
        password_hash: Set("x".to_owned()),
        ..Default::default()
    }
    .insert(txn)
    .await
    .unwrap();
}

/// A transaction whose `search_path` is only `schema`, as the server runs tenant work (and
/// public migrations).
async fn in_schema(db: &DatabaseConnection, schema: &str) -> DatabaseTransaction {
    let txn = db.begin().await.unwrap();
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('search_path', $1, true)",
        [Value::from(format!("\"{schema}\""))],
    ))
    .await
    .unwrap();
    txn
}

async fn exec(db: &impl ConnectionTrait, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn strings(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Vec<String> {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
    .iter()
    .map(|row| row.try_get_by_index(0).unwrap())
    .collect()
}

async fn tables(db: &impl ConnectionTrait, schema: &str) -> Vec<String> {
    strings(
        db,
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
        vec![schema.into()],
    )
    .await
}

/// The schema's own ledger, read schema-qualified so the search_path cannot interfere.
async fn applied(db: &impl ConnectionTrait, schema: &str) -> Vec<String> {
    strings(
        db,
        &format!("SELECT version FROM \"{schema}\".seaql_migrations ORDER BY version"),
        Vec::new(),
    )
    .await
}

async fn count(db: &impl ConnectionTrait, table: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT count(*) FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}

async fn role_names(db: &impl ConnectionTrait) -> Vec<String> {
    strings(db, "SELECT name FROM roles ORDER BY name", Vec::new()).await
}

fn sorted(tables: &[&str]) -> Vec<String> {
    let mut tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    tables.sort();
    tables
}

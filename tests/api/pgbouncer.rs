//! The app behind PgBouncer in transaction mode (`DATABASE_POOLER=pgbouncer`): a real
//! `pgbouncer` in front of the test cluster, with fewer server connections than the app has
//! client connections, so that consecutive transactions of one app connection really land on
//! different server connections and server connections really pass between app connections.
//!
//! They need the `pgbouncer` binary (`apt-get install pgbouncer`, or `PGBOUNCER=/path`), so they
//! are ignored by default: `cargo test --test api pgbouncer -- --ignored`. Asked to run without
//! it, they fail.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use crate::{
    batch, helpers,
    helpers::{TestApp, TestDatabase, free_port},
    isolation, sessions, tenant_auth, tenant_data, tenants,
};

const NEEDS_PGBOUNCER: &str =
    "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored";

/// Server connections PgBouncer opens per database: fewer than the app's own pool.
const SERVER_CONNECTIONS: u32 = 3;
/// The app's pool (its client connections to PgBouncer).
const APP_CONNECTIONS: &str = "8";

/// A `pgbouncer` process in transaction mode on a free loopback port, in front of the server
/// of one test database; stopped (and its directory removed) when dropped.
struct PgBouncer {
    process: Child,
    dir: PathBuf,
    port: u16,
    user: String,
    password: String,
}

impl PgBouncer {
    fn start(server_url: &str) -> PgBouncer {
        let binary = pgbouncer_binary();
        let server = url::Url::parse(server_url).expect("the test database URL parses");
        let user = server.username().to_owned();
        let password = server.password().unwrap_or_default().to_owned();
        let dir = std::env::temp_dir().join(format!(
            "tenantgraph-pgbouncer-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir(&dir).unwrap();
        let port = free_port();
        let settings = format!(
            "[databases]\n\
             * = host={host} port={server_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {SERVER_CONNECTIONS}\n\
             server_lifetime = 30\n\
             max_client_conn = 200\n\
             query_wait_timeout = 30\n\
             logfile = {dir}/pgbouncer.log\n",
            host = server.host_str().unwrap(),
            server_port = server.port().unwrap(),
            dir = dir.display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), settings).unwrap();
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .unwrap();

        let mut command = Command::new(&binary);
        // PgBouncer refuses to run as root; then it runs as the PostgreSQL server's user.
        if nix::unistd::geteuid().is_root() {
            let postgres = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("a `postgres` user to run pgbouncer as (running as root)");
            for entry in std::fs::read_dir(&dir).unwrap() {
                hand_over(&entry.unwrap().path(), &postgres);
            }
            hand_over(&dir, &postgres);
            command.args(["-u", "postgres"]);
        }
        let process = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("could not start {}: {err}", binary.display())
            });
        let mut bouncer = PgBouncer {
            process,
            dir,
            port,
            user,
            password,
        };
        bouncer.wait_until_listening();
        bouncer
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.process.try_wait().unwrap() {
                panic!("pgbouncer exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen within 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }

    /// The URL of `database` through PgBouncer.
    fn url(&self, database: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{database}",
            self.user, self.password, self.port
        )
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pgbouncer_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PGBOUNCER") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("pgbouncer is not installed; {NEEDS_PGBOUNCER}"))
}

fn hand_over(path: &Path, user: &nix::unistd::User) {
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw())).unwrap();
}

/// The app on a fresh database, reached through its own PgBouncer in transaction mode; the
/// batch locks use the database directly.
struct Behind {
    app: TestApp,
    // Dropped after the app, before the database.
    _bouncer: PgBouncer,
    _database: TestDatabase,
}

async fn behind_pgbouncer(
    configure: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> Behind {
    let database = TestDatabase::create().await;
    let bouncer = PgBouncer::start(&database.url);
    let direct = database.url.clone();
    let app = TestApp::spawn_on(&bouncer.url(&database.name), |env| {
        env.insert("DATABASE_POOLER".into(), "pgbouncer".into());
        env.insert("DATABASE_DIRECT_URL".into(), direct);
        env.insert("DATABASE_MAX_CONNECTIONS".into(), APP_CONNECTIONS.into());
        configure(env);
    })
    .await;
    Behind {
        app,
        _bouncer: bouncer,
        _database: database,
    }
}

type Scenario = Box<dyn for<'a> FnOnce(&'a TestApp) -> Pin<Box<dyn Future<Output = ()> + 'a>>>;

/// Runs two scenarios at the same time, each on an app and a database of its own (they count
/// what their database holds). Both are torn down only once both are done: dropping a test
/// database blocks this runtime, and the other app, frozen mid-handshake on it, would keep
/// `DROP DATABASE` waiting until PostgreSQL cut that connection off.
async fn side_by_side(
    first: impl for<'a> FnOnce(&'a TestApp) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'static,
    second: impl for<'a> FnOnce(&'a TestApp) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'static,
) {
    let scenarios: [Scenario; 2] = [Box::new(first), Box::new(second)];
    let finished = join_all(scenarios.into_iter().map(|scenario| async move {
        let behind = behind_pgbouncer(|_| {}).await;
        scenario(&behind.app).await;
        behind
    }))
    .await;
    drop(finished);
}

#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn the_tenant_lifecycle_works_behind_pgbouncer() {
    let behind = behind_pgbouncer(|_| {}).await;
    tenants::lifecycle_keeps_the_registry_truthful(&behind.app).await;
}

#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn tenant_logins_work_behind_pgbouncer() {
    let behind = behind_pgbouncer(|_| {}).await;
    tenant_auth::tenant_admin_logs_in_by_domain_or_schema(&behind.app).await;
}

#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn the_data_api_works_behind_pgbouncer_at_the_same_statement_cost() {
    let behind = behind_pgbouncer(helpers::count_statements).await;
    let app = &behind.app;
    tenant_data::person_lifecycle_per_role(app).await;
    tenant_data::nested_creators_cost_a_constant_number_of_queries(app).await;
    tenant_data::users_list_costs_the_same_and_mutations_read_their_writes(app).await;
}

#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn tenants_stay_isolated_behind_pgbouncer() {
    side_by_side(
        |app| Box::pin(isolation::people_stay_isolated(app)),
        |app| Box::pin(tenant_auth::no_tenant_search_path_outlives_a_request(app)),
    )
    .await;
}

/// A refused pin aborts its transaction on a server connection PgBouncer then gives to others:
/// the rollback must reach it first.
#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn refused_pins_leave_server_connections_clean_behind_pgbouncer() {
    let behind = behind_pgbouncer(|env| {
        env.insert("DATABASE_MAX_CONNECTIONS".into(), "1".into());
    })
    .await;
    tenant_auth::pin_refusals_leave_the_connection_clean(&behind.app).await;
}

#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn batches_provision_and_migrate_behind_pgbouncer() {
    side_by_side(
        |app| {
            Box::pin(batch::twenty_tenants_provisioned_within_the_concurrency(
                app,
            ))
        },
        |app| Box::pin(batch::fleet_migrates_down_and_back_up(app, 10)),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn sessions_and_access_events_work_behind_pgbouncer() {
    let behind = behind_pgbouncer(|_| {}).await;
    sessions::session_round_trip(&behind.app).await;
}

/// Many requests at once from two tenants, more than PgBouncer has server connections: every
/// answer is right and of the caller's tenant, and a statement that skips the pin still fails.
#[tokio::test]
#[ignore = "needs pgbouncer (apt-get install pgbouncer): cargo test --test api pgbouncer -- --ignored"]
async fn concurrent_tenant_requests_share_server_connections_safely() {
    let behind = behind_pgbouncer(|_| {}).await;
    let app = &behind.app;
    let mut callers = Vec::new();
    for domain in ["north.church", "south.church"] {
        let tenant = app.with_tenant(domain).await;
        callers.push((domain, tenant.admin, tenant.api_key));
    }

    const CREATE: &str = "mutation($input: CreatePersonInput!) { createPerson(input: $input) { id lastName createdBy { email } } }";
    const PEOPLE: &str = "{ me { tenant { domain } } people(first: 100) { totalCount nodes { lastName createdBy { email } } } }";
    const ROUNDS: usize = 15;
    for round in 0..ROUNDS {
        let requests = callers.iter().flat_map(|(domain, token, api_key)| {
            let create = async move {
                let created = app
                    .graphql(
                        CREATE,
                        json!({ "input": { "firstName": "P", "lastName": format!("{domain} {round}") } }),
                        Some(token),
                    )
                    .await;
                let person = &created.data()["createPerson"];
                assert_eq!(person["lastName"], format!("{domain} {round}"));
                assert_eq!(person["createdBy"]["email"], format!("admin@{domain}"));
            };
            let read_by_token = async move {
                let page = app.graphql(PEOPLE, json!({}), Some(token)).await;
                assert_eq!(page.data()["me"]["tenant"]["domain"], *domain);
                assert_only_from(&page.data()["people"], domain);
            };
            let read_by_key = async move {
                let response = app
                    .http
                    .post(app.url("/graphql"))
                    .header("x-api-key", api_key)
                    .json(&json!({ "query": "{ people(first: 100) { nodes { lastName createdBy { email } } } }" }))
                    .send()
                    .await
                    .unwrap();
                let page = helpers::Gql(response.json().await.unwrap());
                assert_only_from(&page.data()["people"], domain);
            };
            [
                Box::pin(create) as Pin<Box<dyn Future<Output = ()>>>,
                Box::pin(read_by_token),
                Box::pin(read_by_key),
            ]
        });
        join_all(requests).await;
    }
    for (domain, token, _) in &callers {
        let page = app.graphql(PEOPLE, json!({}), Some(token)).await;
        assert_eq!(page.data()["people"]["totalCount"], ROUNDS, "{domain}");
    }

    // The pool's own statements, also many at once: the registry answers, tenant tables do not.
    let unpinned = join_all((0..20).map(|i| async move {
        let sql = if i % 2 == 0 {
            "SELECT count(*) FROM person"
        } else {
            "SELECT count(*) FROM public.tenants"
        };
        app.db()
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .map(|row| row.unwrap().try_get_by_index::<i64>(0).unwrap())
    }))
    .await;
    for (i, result) in unpinned.into_iter().enumerate() {
        if i % 2 == 0 {
            let err = result.expect_err("an unpinned tenant table is unreachable");
            assert!(err.to_string().contains("does not exist"), "{err}");
        } else {
            assert_eq!(result.unwrap(), 2);
        }
    }
}

/// Every person of `page` was made in `domain` by its admin.
fn assert_only_from(page: &serde_json::Value, domain: &str) {
    for person in page["nodes"].as_array().unwrap() {
        let last_name = person["lastName"].as_str().unwrap();
        assert!(
            last_name.starts_with(&format!("{domain} ")),
            "{last_name} in {domain}"
        );
        assert_eq!(person["createdBy"]["email"], format!("admin@{domain}"));
    }
}

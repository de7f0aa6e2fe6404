//! The test harness: one PostgreSQL per test run, a fresh database per test cloned from a
//! migrated template, the app in-process on a free port, and GraphQL clients over HTTP and
//! WebSocket.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use tenantgraph::{
    app::TenantGraph,
    config::Config,
    db::{
        self,
        embedded::{EmbeddedOptions, EmbeddedPostgres},
    },
    startup::Spawned,
    state::SharedState,
};
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

pub const OPERATOR_EMAIL: &str = "operator@tenantgraph.test";
pub const OPERATOR_PASSWORD: &str = "operator-password-for-tests";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
/// The password of every user [`TestApp::with_tenant`] makes.
/// The subscriptions of the database a query runs in: `pg_subscription` is the cluster's, which
/// other tests' data servers share.
pub const OWN_SUBSCRIPTIONS: &str = "SELECT count(*) FROM pg_subscription WHERE subdbid = \
    (SELECT oid FROM pg_database WHERE datname = current_database())";
pub const TENANT_PASSWORD: &str = "tenant-user-password";

pub const CREATE_TENANT: &str = r#"
mutation($input: CreateTenantInput!) {
  createTenant(input: $input) {
    tenant { id domain schemaName status schemaProvisioned migrationsApplied apiKeyPrefix
             settings { features limits { users storageGb } } }
    apiKey schemaCreated migrationsApplied message
    migrationStatus { currentRevision appliedMigrations pendingMigrations schemaProvisioned migrationsApplied }
  }
}"#;

const CREATE_USER: &str =
    "mutation($input: CreateUserInput!) { createUser(input: $input) { id email roles } }";

/// The fields `createTenant` needs, for a tenant of `domain`.
pub fn tenant_input(domain: &str) -> Value {
    json!({
        "tenantName": format!("Tenant {domain}"),
        "domain": domain,
        "email": format!("office@{domain}.example"),
    })
}

/// A provisioned tenant with a user of each seeded role and its API key, as
/// [`TestApp::with_tenant`] makes it.
#[derive(Debug, Clone)]
pub struct TestTenant {
    pub id: String,
    pub domain: String,
    pub schema: String,
    /// The operator's token that made the tenant.
    pub operator: String,
    /// Tokens of `admin@<domain>`, `member@<domain>` and `viewer@<domain>`, each with the role of
    /// its name and the password [`TENANT_PASSWORD`].
    pub admin: String,
    pub member: String,
    pub viewer: String,
    pub api_key: String,
}

/// The server every test of this run uses: `DATABASE_URL` when set, else an embedded cluster
/// shared by all test processes (started by the first, adopted by the others).
static SERVER: OnceCell<TestServer> = OnceCell::const_new();

struct TestServer {
    /// URL of the server's maintenance database, with `{db}` where a database name goes.
    url_pattern: String,
    template: String,
}

impl TestServer {
    fn url(&self, database: &str) -> String {
        self.url_pattern.replace("{db}", database)
    }
}

async fn test_server() -> &'static TestServer {
    SERVER
        .get_or_init(|| async {
            let url_pattern = match std::env::var("DATABASE_URL") {
                Ok(url) => {
                    let mut parsed = url::Url::parse(&url).expect("DATABASE_URL is a URL");
                    parsed.set_path("/DBNAME");
                    parsed.to_string().replace("DBNAME", "{db}")
                }
                Err(_) => {
                    let data_dir = cluster_root();
                    let cluster = EmbeddedPostgres::start(EmbeddedOptions {
                        data_dir,
                        pg_bin: std::env::var_os("PG_BIN").map(Into::into),
                    })
                    .await
                    .expect("the embedded test cluster starts");
                    // Left running for the other test processes; the next run adopts it.
                    let pattern = cluster.url("{db}");
                    std::mem::forget(cluster);
                    pattern
                }
            };
            let mut server = TestServer {
                url_pattern,
                template: String::new(),
            };
            server.template = ensure_template(&server).await;
            server
        })
        .await
}

/// Where test clusters live: TEST_CLUSTER_DIR (CI uses a fresh one), else under /tmp, which the
/// unprivileged server user can always reach.
pub fn cluster_root() -> std::path::PathBuf {
    std::env::var_os("TEST_CLUSTER_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("tenantgraph-tests-{}", nix::unistd::geteuid()))
        })
}

/// A second PostgreSQL cluster beside the first, for tenants placed on another server: its own
/// data dir (`second` under the cluster root), its own port on 127.0.0.1, `wal_level=logical`.
/// Shared by the tests of a run like the first, and left running for the next.
static SECOND_SERVER: OnceCell<String> = OnceCell::const_new();

/// Starts (or adopts) a cluster under `data_dir`, running with `wal_level=logical`.
pub async fn start_logical_cluster(data_dir: std::path::PathBuf) -> EmbeddedPostgres {
    let options = EmbeddedOptions {
        data_dir,
        pg_bin: std::env::var_os("PG_BIN").map(Into::into),
    };
    let cluster = EmbeddedPostgres::start(options.clone())
        .await
        .expect("a second test cluster starts");
    let admin = db::open_pool(&cluster.url("postgres"), 1).await.unwrap();
    let level: String = admin
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('wal_level')",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    if level == "logical" {
        admin.close().await.unwrap();
        return cluster;
    }
    // Takes effect at the next start (postgresql.auto.conf outlives the settings file).
    admin
        .execute_unprepared("ALTER SYSTEM SET wal_level = 'logical'")
        .await
        .unwrap();
    admin.close().await.unwrap();
    cluster.stop().await.unwrap();
    EmbeddedPostgres::start(options)
        .await
        .expect("the cluster starts again with wal_level=logical")
}

async fn second_server() -> &'static str {
    SECOND_SERVER
        .get_or_init(|| async {
            let cluster = start_logical_cluster(cluster_root().join("second")).await;
            let pattern = cluster.url("{db}");
            // Left running for the other test processes; the next run adopts it.
            std::mem::forget(cluster);
            pattern
        })
        .await
}

/// A template database with the public migrations applied, named after the migrations' source
/// so that any change to them makes a new one. Built once per server under an advisory lock.
async fn ensure_template(server: &TestServer) -> String {
    use std::hash::{Hash, Hasher};

    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut sources = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migration/src"
    ))];
    let mut files = Vec::new();
    while let Some(path) = sources.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for file in files {
        std::fs::read(&file).unwrap().hash(&mut hasher);
    }
    let template = format!("tg_template_{:016x}", hasher.finish());

    let admin = db::open_pool(&server.url("postgres"), 1).await.unwrap();
    // A server killed by a test (or a test's runtime stopping) can leave a connection mid-
    // handshake; such a backend ignores the barrier `DROP DATABASE` waits on until
    // `authentication_timeout` (60 s by default) ends it. Best effort: a server we may not
    // reconfigure keeps its setting.
    for statement in [
        "ALTER SYSTEM SET authentication_timeout = '3s'",
        "SELECT pg_reload_conf()",
    ] {
        let _ = admin.execute_unprepared(statement).await;
    }
    admin
        .execute_unprepared("SELECT pg_advisory_lock(727274)")
        .await
        .unwrap();
    let exists = database_exists(&admin, &template).await;
    if !exists {
        let building = format!("{template}_build");
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {building}"))
            .await
            .unwrap();
        let pool = db::open_pool(&server.url(&building), 2).await.unwrap();
        db::migrate::migrate_public(&pool, db::migrate::PublicMigration::Up)
            .await
            .unwrap();
        pool.close().await.unwrap();
        admin
            .execute_unprepared(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .unwrap();
    }
    admin
        .execute_unprepared("SELECT pg_advisory_unlock(727274)")
        .await
        .unwrap();
    admin.close().await.unwrap();
    template
}

async fn database_exists(admin: &DatabaseConnection, name: &str) -> bool {
    admin
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await
        .unwrap()
        .is_some()
}

/// A fresh database cloned from the template; dropped when the handle is (unless it is one the
/// test brought itself, see [`TestDatabase::external`]).
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    /// Where to drop the database from; `None` for a database this handle does not own.
    maintenance_url: Option<String>,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let server = test_server().await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = db::open_pool(&server.url("postgres"), 1).await.unwrap();
        admin
            .execute_unprepared(&format!(
                "CREATE DATABASE {name} TEMPLATE {}",
                server.template
            ))
            .await
            .unwrap();
        admin.close().await.unwrap();
        TestDatabase {
            url: server.url(&name),
            name,
            maintenance_url: Some(server.url("postgres")),
        }
    }

    /// A fresh, empty database on the first cluster (whose `wal_level` is not logical).
    pub async fn create_on_first_server() -> TestDatabase {
        Self::create_empty(&test_server().await.url_pattern).await
    }

    /// A fresh, empty database on the second cluster: a data server to add.
    pub async fn create_on_second_server() -> TestDatabase {
        Self::create_empty(second_server().await).await
    }

    /// A fresh, empty database on the server of `url_pattern` (`{db}` where a name goes).
    pub async fn create_empty(url_pattern: &str) -> TestDatabase {
        let name = format!("server_{}", uuid::Uuid::new_v4().simple());
        let maintenance = url_pattern.replace("{db}", "postgres");
        let admin = db::open_pool(&maintenance, 1).await.unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        TestDatabase {
            url: url_pattern.replace("{db}", &name),
            name,
            maintenance_url: Some(maintenance),
        }
    }

    /// A database the test manages itself (such as one on a private cluster); never dropped here.
    pub fn external(url: &str) -> TestDatabase {
        let name = url::Url::parse(url)
            .ok()
            .map(|url| url.path().trim_start_matches('/').to_owned())
            .unwrap_or_default();
        TestDatabase {
            name,
            url: url.to_owned(),
            maintenance_url: None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(url) = self.maintenance_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; use a runtime of its own.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let admin = db::open_pool(&url, 1).await?;
                    admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await?;
                    admin.close().await?;
                    anyhow::Ok(())
                })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("could not drop test database {}: {err:#}", self.name);
        }
    }
}

/// A loopback port nobody listens on at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment a test app starts with; tests add or override variables.
pub fn test_env(database_url: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", database_url),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", JWT_SECRET),
        ("BOOTSTRAP_ADMIN_EMAIL", OPERATOR_EMAIL),
        ("BOOTSTRAP_ADMIN_PASSWORD", OPERATOR_PASSWORD),
        ("DATABASE_MAX_CONNECTIONS", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Turns on `extensions.sqlStatements`, for tests that count what an operation sent.
pub fn count_statements(env: &mut HashMap<String, String>) {
    env.insert("GRAPHQL_STATEMENT_COUNTS".into(), "true".into());
}

/// The document was refused before execution began: executed operations report the statements
/// they sent (with `GRAPHQL_STATEMENT_COUNTS` on), refused ones never got that far.
pub fn assert_not_executed(response: &Gql) {
    assert!(
        response.0["extensions"]["sqlStatements"].is_null(),
        "the operation was executed: {}",
        response.0
    );
}

pub fn config_from(env: &HashMap<String, String>) -> Config {
    Config::from_lookup(|name| env.get(name).cloned()).expect("test configuration is valid")
}

/// The app, running in-process on a free port over its own database.
pub struct TestApp {
    pub address: SocketAddr,
    pub state: SharedState,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    // Declared last: dropped after the server task is aborted.
    pub database: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the app after `configure` adjusted its environment.
    pub async fn spawn_with(configure: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        Self::spawn_app(&TenantGraph::built_in(), configure).await
    }

    /// Starts the app on a database the test manages itself (`DATABASE_URL` = `database_url`).
    pub async fn spawn_on(
        database_url: &str,
        configure: impl FnOnce(&mut HashMap<String, String>),
    ) -> TestApp {
        Self::spawn_serving(
            &TenantGraph::built_in(),
            TestDatabase::external(database_url),
            configure,
        )
        .await
    }

    /// Starts the application `app` (one built on tenantgraph) after `configure` adjusted its
    /// environment.
    pub async fn spawn_app(
        app: &TenantGraph,
        configure: impl FnOnce(&mut HashMap<String, String>),
    ) -> TestApp {
        Self::spawn_serving(app, TestDatabase::create().await, configure).await
    }

    async fn spawn_serving(
        app: &TenantGraph,
        database: TestDatabase,
        configure: impl FnOnce(&mut HashMap<String, String>),
    ) -> TestApp {
        let mut env = test_env(&database.url);
        configure(&mut env);
        let Spawned {
            address,
            state,
            task: server,
        } = app
            .application(config_from(&env))
            .await
            .expect("the app starts")
            .spawn();
        TestApp {
            address,
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            server,
            database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn db(&self) -> &db::Pool {
        &self.state.db
    }

    /// The one integer `sql` returns (schema-qualify: the pool's search path is pg_catalog).
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.db()
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                sql,
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    }

    /// Takes one tenant a migration below head and back with `migrateTenants`, asserting that
    /// both batches succeed.
    pub async fn migrate_tenant_down_and_up(&self, tenant_id: &str, token: &str) {
        let names = migration::tenant_migration_names();
        let previous = &names[names.len() - 2];
        let fleet = "mutation($to: String!, $ids: [ID!]) { migrateTenants(targetRevision: $to, tenantIds: $ids, confirm: $to, options: { wait: true }) { status } }";
        for to in [previous.as_str(), "head"] {
            let batch = self
                .graphql(fleet, json!({ "to": to, "ids": [tenant_id] }), Some(token))
                .await;
            assert_eq!(
                batch.data()["migrateTenants"]["status"],
                "SUCCEEDED",
                "{}",
                batch.0
            );
        }
    }

    /// Posts one GraphQL operation and returns the JSON response.
    pub async fn graphql(&self, query: &str, variables: Value, token: Option<&str>) -> Gql {
        let response = self
            .post_json(json!({ "query": query, "variables": variables }), token)
            .await;
        assert!(
            response.status().is_success(),
            "HTTP {} for {query}",
            response.status()
        );
        Gql(response.json().await.unwrap())
    }

    /// Posts any JSON body to `/graphql`.
    pub async fn post_json(&self, body: Value, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(self.url("/graphql")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Gql {
        self.graphql(
            "mutation($input: LoginInput!) { login(input: $input) { token expiresAt user { id email roles } } }",
            json!({ "input": { "email": email, "password": password } }),
            None,
        )
        .await
    }

    /// A token of the bootstrap platform operator.
    pub async fn operator_token(&self) -> String {
        self.login(OPERATOR_EMAIL, OPERATOR_PASSWORD).await.data()["login"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a tenant as the operator, asserting success; returns the `createTenant` result.
    pub async fn create_tenant(&self, operator: &str, input: Value) -> Value {
        self.graphql(CREATE_TENANT, json!({ "input": input }), Some(operator))
            .await
            .data()["createTenant"]
            .clone()
    }

    /// A tenant of `domain` with an admin, a member, a viewer and its API key.
    /// A tenant with only its first admin `admin@<domain>`; returns (tenant id, API key).
    pub async fn tenant_with_admin(&self, operator: &str, domain: &str) -> (String, String) {
        let mut input = tenant_input(domain);
        input["admin"] = json!({ "email": format!("admin@{domain}"), "password": TENANT_PASSWORD });
        let created = self.create_tenant(operator, input).await;
        (
            created["tenant"]["id"].as_str().unwrap().to_owned(),
            created["apiKey"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn with_tenant(&self, domain: &str) -> TestTenant {
        self.with_tenant_from(tenant_input(domain)).await
    }

    /// [`TestApp::with_tenant`] placed on the database server `server`.
    pub async fn with_tenant_on(&self, domain: &str, server: &str) -> TestTenant {
        let mut input = tenant_input(domain);
        input["server"] = json!(server);
        self.with_tenant_from(input).await
    }

    async fn with_tenant_from(&self, mut input: Value) -> TestTenant {
        let operator = self.operator_token().await;
        let domain = input["domain"].as_str().unwrap().to_owned();
        let domain = domain.as_str();
        input["admin"] = json!({ "email": format!("admin@{domain}"), "password": TENANT_PASSWORD });
        let created = self.create_tenant(&operator, input).await;
        let admin = self.tenant_token(domain, &format!("admin@{domain}")).await;
        let mut staff = Vec::new();
        for role in ["member", "viewer"] {
            let email = format!("{role}@{domain}");
            let user = json!({ "input": { "email": email, "password": TENANT_PASSWORD, "roles": [role] } });
            let made = self.graphql(CREATE_USER, user, Some(&admin)).await;
            assert_eq!(made.data()["createUser"]["roles"], json!([role]));
            let login = self.tenant_login(domain, &email, TENANT_PASSWORD).await;
            assert_eq!(login.data()["login"]["user"]["roles"], json!([role]));
            staff.push(login.data()["login"]["token"].as_str().unwrap().to_owned());
        }
        let [member, viewer] = staff.try_into().unwrap();
        let text = |value: &Value| value.as_str().unwrap().to_owned();
        TestTenant {
            id: text(&created["tenant"]["id"]),
            domain: text(&created["tenant"]["domain"]),
            schema: text(&created["tenant"]["schemaName"]),
            api_key: text(&created["apiKey"]),
            operator,
            admin,
            member,
            viewer,
        }
    }

    /// Logs a user in to the tenant `tenant` (a domain or schema name).
    pub async fn tenant_login(&self, tenant: &str, email: &str, password: &str) -> Gql {
        self.graphql(
            "mutation($input: LoginInput!) { login(input: $input) { token expiresAt user { id email roles } tenant { domain schemaName } } }",
            json!({ "input": { "email": email, "password": password, "tenant": tenant } }),
            None,
        )
        .await
    }

    /// A token of a user of [`TestApp::with_tenant`] (password [`TENANT_PASSWORD`]).
    pub async fn tenant_token(&self, domain: &str, email: &str) -> String {
        self.tenant_login(domain, email, TENANT_PASSWORD)
            .await
            .data()["login"]["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Posts one GraphQL operation with an `X-API-Key` header.
    pub async fn graphql_with_key(&self, query: &str, variables: Value, key: &str) -> Gql {
        let response = self
            .http
            .post(self.url("/graphql"))
            .header("x-api-key", key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .unwrap();
        Gql(response.json().await.unwrap())
    }

    /// Opens `/graphql/ws` with the `graphql-transport-ws` protocol (not yet initialised).
    pub async fn websocket(&self) -> WsClient {
        WsClient::connect(&format!("ws://{}/graphql/ws", self.address), None).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A GraphQL response body.
#[derive(Debug, Clone)]
pub struct Gql(pub Value);

impl Gql {
    /// `data`, asserting there were no errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.0.get("errors").is_none_or(Value::is_null),
            "unexpected errors: {}",
            self.0
        );
        &self.0["data"]
    }

    /// `extensions.code` of the first error, asserting there is one.
    pub fn error_code(&self) -> &str {
        self.0["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error with a code, got {}", self.0))
    }

    pub fn error_field(&self) -> Option<&str> {
        self.0["errors"][0]["extensions"]["field"].as_str()
    }

    /// The `extensions.field` of every error, sorted.
    pub fn error_fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = self.0["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["extensions"]["field"].as_str().unwrap())
            .collect();
        fields.sort();
        fields
    }

    pub fn error_message(&self) -> &str {
        self.0["errors"][0]["message"].as_str().unwrap_or_default()
    }
}

/// A client of the `graphql-transport-ws` protocol.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    pub async fn connect(url: &str, origin: Option<&str>) -> WsClient {
        Self::try_connect(url, origin)
            .await
            .expect("websocket opens")
    }

    pub async fn try_connect(
        url: &str,
        origin: Option<&str>,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        Self::try_connect_with_protocol(url, origin, "graphql-transport-ws").await
    }

    /// Opens a socket offering `protocol` (`graphql-transport-ws`, or the legacy `graphql-ws`).
    pub async fn try_connect_with_protocol(
        url: &str,
        origin: Option<&str>,
        protocol: &str,
    ) -> Result<WsClient, tokio_tungstenite::tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).unwrap(),
        );
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(WsClient { socket })
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends `connection_init` with the token (if any) and returns the server's reply.
    pub async fn init(&mut self, token: Option<&str>) -> WsEvent {
        let payload = match token {
            Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        self.next_event().await
    }

    /// Sends any frame: text that is not JSON, or a binary message.
    pub async fn send_frame(&mut self, frame: Message) {
        self.socket.send(frame).await.unwrap();
    }

    /// Sends several messages in one write, so that they reach the server together.
    pub async fn send_together(&mut self, messages: impl IntoIterator<Item = Value>) {
        for message in messages {
            self.socket
                .feed(Message::Text(message.to_string().into()))
                .await
                .unwrap();
        }
        self.socket.flush().await.unwrap();
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    /// The next protocol message or close frame (pings are answered), within 20 seconds.
    pub async fn next_event(&mut self) -> WsEvent {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await
                .expect("a websocket message within 20 s");
            match message {
                None => return WsEvent::Closed(None),
                Some(Err(_)) => return WsEvent::Closed(None),
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return WsEvent::Message(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return WsEvent::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                    );
                }
                Some(Ok(_)) => continue,
            }
        }
    }
}

#[derive(Debug)]
pub enum WsEvent {
    Message(Value),
    /// Close code and reason, when the server sent a close frame.
    Closed(Option<(u16, String)>),
}

impl WsEvent {
    pub fn message(self) -> Value {
        match self {
            WsEvent::Message(value) => value,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

//! The embedded PostgreSQL default against the real server binaries installed on this machine.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};
use sea_orm::{ConnectionTrait, Database, DatabaseBackend, Statement};
use tenantgraph::db::embedded::{EmbeddedOptions, EmbeddedPostgres, Ownership, StopOutcome};

/// A unique directory under /tmp, which the `postgres` user can traverse when the tests run as
/// root. Removed on drop, after shutting down any server a failed test left running.
struct TestDir {
    path: PathBuf,
}

impl TestDir {
    fn new(name: &str) -> TestDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = PathBuf::from(format!(
            "/tmp/tenantgraph-embedded-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir { path }
    }

    fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    fn options(&self) -> EmbeddedOptions {
        EmbeddedOptions {
            data_dir: self.data_dir(),
            pg_bin: None,
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(pid) = postmaster_pid(&self.data_dir()) {
            // SIGQUIT is PostgreSQL's immediate shutdown.
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            wait_until_gone(pid);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let contents = std::fs::read_to_string(data_dir.join("postgres/postmaster.pid")).ok()?;
    contents.lines().next()?.trim().parse().ok()
}

/// Waits until `pid` has exited; a zombie counts, since nobody may reap an orphaned server.
fn wait_until_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat)
                if !stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            _ => return,
        }
    }
    panic!("process {pid} did not exit");
}

/// The postmaster `pid` has exited and left no `postmaster.pid` behind.
fn assert_server_gone(dir: &TestDir, pid: i32) {
    wait_until_gone(pid);
    assert_eq!(
        postmaster_pid(&dir.data_dir()),
        None,
        "postmaster.pid remains"
    );
}

async fn start(dir: &TestDir) -> EmbeddedPostgres {
    EmbeddedPostgres::start(dir.options())
        .await
        .unwrap_or_else(|error| panic!("start failed: {error:#}"))
}

async fn select_one(postgres: &EmbeddedPostgres) {
    let db = Database::connect(postgres.url("postgres"))
        .await
        .expect("connects");
    db.execute_unprepared("select 1")
        .await
        .expect("runs a query");
    db.close().await.unwrap();
}

fn start_error(result: anyhow::Result<EmbeddedPostgres>) -> String {
    match result {
        Ok(postgres) => panic!("start unexpectedly succeeded: {postgres:?}"),
        Err(error) => format!("{error:#}"),
    }
}

#[tokio::test]
async fn a_fresh_data_dir_is_initialised_and_accepts_connections() {
    let dir = TestDir::new("fresh");
    let postgres = start(&dir).await;

    select_one(&postgres).await;
    assert_ne!(postgres.port(), 0);
    assert_eq!(postgres.data_dir(), dir.data_dir());
    let password = postgres
        .url("x")
        .split(['@', ':'])
        .nth(2)
        .unwrap()
        .to_owned();
    assert!(password.len() >= 32 && password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        postgres.url("app"),
        format!(
            "postgres://tenantgraph:{password}@127.0.0.1:{}/app",
            postgres.port()
        )
    );
    assert!(
        !format!("{postgres:?}").contains(&password),
        "Debug must redact the password"
    );

    let credentials = std::fs::metadata(dir.data_dir().join("postgres.json")).unwrap();
    assert_eq!(credentials.mode() & 0o777, 0o600);
    assert_eq!(credentials.uid(), geteuid().as_raw());
    let cluster = std::fs::metadata(dir.data_dir().join("postgres")).unwrap();
    assert_eq!(cluster.mode() & 0o777, 0o700);
    if geteuid().is_root() {
        let postgres_user = User::from_name("postgres").unwrap().unwrap();
        assert_eq!(
            cluster.uid(),
            postgres_user.uid.as_raw(),
            "the server must not run as root"
        );
    }
    assert!(!dir.data_dir().join(".initdb-password").exists());

    assert_eq!(postgres.ownership(), Ownership::Started);
    assert_eq!(postgres.stop().await.unwrap(), StopOutcome::Stopped);
    assert!(
        postmaster_pid(&dir.data_dir()).is_none(),
        "stop waits for the server to exit"
    );
}

#[tokio::test]
async fn a_second_start_reuses_the_cluster_and_keeps_its_data() {
    let dir = TestDir::new("reuse");
    let first = start(&dir).await;
    let db = Database::connect(first.url("postgres")).await.unwrap();
    db.execute_unprepared(
        "create table survivors (name text); insert into survivors values ('ada')",
    )
    .await
    .unwrap();
    db.close().await.unwrap();
    let port = first.port();
    first.stop().await.unwrap();

    let second = start(&dir).await;
    assert_eq!(second.port(), port);
    let db = Database::connect(second.url("postgres")).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select name from survivors",
        ))
        .await
        .unwrap()
        .expect("the row survived the restart");
    assert_eq!(row.try_get::<String>("", "name").unwrap(), "ada");
    db.close().await.unwrap();
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_server_left_running_by_a_dead_process_is_adopted() {
    let dir = TestDir::new("adopt");
    let orphaned = start(&dir).await;
    let port = orphaned.port();
    let pid = postmaster_pid(&dir.data_dir()).unwrap();
    // Like a `kill -9` of tenantgraph: no stop, the server keeps running.
    drop(orphaned);

    let adopted = start(&dir).await;
    assert_eq!(adopted.port(), port);
    assert_eq!(adopted.ownership(), Ownership::Adopted);
    assert_eq!(
        postmaster_pid(&dir.data_dir()),
        Some(pid),
        "no second server was started"
    );
    select_one(&adopted).await;
    assert_eq!(
        adopted.stop().await.unwrap(),
        StopOutcome::Stopped,
        "nobody else uses it, so the adopter stops it"
    );
    assert_server_gone(&dir, pid);
}

#[tokio::test]
async fn a_cluster_is_stopped_only_by_the_last_handle_using_it() {
    let dir = TestDir::new("shared");
    let server = start(&dir).await;
    assert_eq!(server.ownership(), Ownership::Started);
    let pid = postmaster_pid(&dir.data_dir()).unwrap();

    // A command run beside a live server adopts its cluster and leaves it running.
    let command = start(&dir).await;
    assert_eq!(command.ownership(), Ownership::Adopted);
    assert_eq!(command.stop().await.unwrap(), StopOutcome::LeftRunning);
    select_one(&server).await;

    // The server stopping while a command still runs leaves the cluster to the command...
    let command = start(&dir).await;
    assert_eq!(server.stop().await.unwrap(), StopOutcome::LeftRunning);
    select_one(&command).await;
    assert_eq!(postmaster_pid(&dir.data_dir()), Some(pid));

    // ...which, being the last, stops it.
    assert_eq!(command.stop().await.unwrap(), StopOutcome::Stopped);
    assert_server_gone(&dir, pid);
}

#[tokio::test]
async fn a_server_killed_with_sigkill_is_started_again() {
    let dir = TestDir::new("sigkill");
    let killed = start(&dir).await;
    let port = killed.port();
    let pid = postmaster_pid(&dir.data_dir()).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    wait_until_gone(pid);
    assert_eq!(
        postmaster_pid(&dir.data_dir()),
        Some(pid),
        "the stale postmaster.pid stays behind"
    );

    let restarted = start(&dir).await;
    assert_eq!(restarted.port(), port);
    assert_ne!(postmaster_pid(&dir.data_dir()), Some(pid));
    select_one(&restarted).await;
    restarted.stop().await.unwrap();
}

#[tokio::test]
async fn a_stale_pid_file_naming_another_live_process_does_not_block_start() {
    let dir = TestDir::new("stale-pid");
    let first = start(&dir).await;
    let port = first.port();
    first.stop().await.unwrap();
    let mut unrelated = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let cluster_dir = dir.data_dir().join("postgres");
    std::fs::write(
        cluster_dir.join("postmaster.pid"),
        format!(
            "{}\n{}\n1700000000\n{port}\n\n127.0.0.1\n  1234   5678\nready   \n",
            unrelated.id(),
            cluster_dir.display()
        ),
    )
    .unwrap();

    let result = EmbeddedPostgres::start(dir.options()).await;
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
    let postgres = result.unwrap_or_else(|error| panic!("start failed: {error:#}"));
    select_one(&postgres).await;
    postgres.stop().await.unwrap();
}

#[tokio::test]
async fn two_concurrent_starts_share_one_cluster() {
    let dir = TestDir::new("concurrent");
    let (first, second) = tokio::join!(
        EmbeddedPostgres::start(dir.options()),
        EmbeddedPostgres::start(dir.options())
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.port(), second.port());
    assert_eq!(
        first.url("postgres"),
        second.url("postgres"),
        "one initdb, one password"
    );
    let mut ownerships = [first.ownership(), second.ownership()];
    ownerships.sort_by_key(|ownership| *ownership == Ownership::Adopted);
    assert_eq!(
        ownerships,
        [Ownership::Started, Ownership::Adopted],
        "one starts the server, the other adopts it"
    );
    assert_eq!(first.stop().await.unwrap(), StopOutcome::LeftRunning);
    select_one(&second).await;
    assert_eq!(second.stop().await.unwrap(), StopOutcome::Stopped);
    assert!(postmaster_pid(&dir.data_dir()).is_none());
}

#[tokio::test]
async fn a_persisted_port_taken_by_another_program_is_reported() {
    let dir = TestDir::new("port-taken");
    let first = start(&dir).await;
    let port = first.port();
    first.stop().await.unwrap();
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();

    let error = start_error(EmbeddedPostgres::start(dir.options()).await);
    assert!(error.contains(&format!("port {port}")), "{error}");
    assert!(error.contains("postgres.json"), "{error}");
}

#[tokio::test]
async fn pg_bin_without_the_server_binaries_fails_with_instructions() {
    let dir = TestDir::new("no-binaries");
    let empty_bin = dir.path.join("bin");
    std::fs::create_dir(&empty_bin).unwrap();
    let options = EmbeddedOptions {
        data_dir: dir.data_dir(),
        pg_bin: Some(empty_bin.clone()),
    };

    let error = start_error(EmbeddedPostgres::start(options).await);
    assert!(
        error.contains(&format!("PG_BIN={}", empty_bin.display())),
        "{error}"
    );
    assert!(error.contains("apt-get install postgresql"), "{error}");
    assert!(error.contains("DATABASE_URL"), "{error}");
    assert!(
        !dir.data_dir().exists(),
        "nothing is created before the binaries are found"
    );
}

#[tokio::test]
async fn as_root_a_data_dir_the_server_user_cannot_reach_is_reported() {
    if !geteuid().is_root() {
        return;
    }
    let dir = TestDir::new("untraversable");
    let private = dir.path.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let options = EmbeddedOptions {
        data_dir: private.join("data"),
        pg_bin: None,
    };

    let error = start_error(EmbeddedPostgres::start(options).await);
    assert!(
        error.contains(&format!("cannot enter {}", private.display())),
        "{error}"
    );
    assert!(error.contains("chmod o+x"), "{error}");
}

#[tokio::test]
async fn a_server_that_fails_to_start_reports_the_end_of_its_log() {
    let dir = TestDir::new("bad-config");
    start(&dir).await.stop().await.unwrap();
    let config = dir.data_dir().join("postgres/postgresql.conf");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\nnot_a_real_setting = 1\n");
    std::fs::write(&config, text).unwrap();

    let error = start_error(EmbeddedPostgres::start(dir.options()).await);
    assert!(error.contains("pg_ctl start failed"), "{error}");
    assert!(error.contains("postgres.log"), "{error}");
    assert!(
        error.contains("not_a_real_setting"),
        "the log tail explains why: {error}"
    );
}

// The `tenantgraph` binary on a private data dir: a server and the commands run beside it.

const OPERATOR_EMAIL: &str = "operator@tenantgraph.test";
const OPERATOR_PASSWORD: &str = "operator-password-for-tests";
/// Long enough for a server to initialise a cluster, migrate and start listening.
const SERVE_WITHIN: Duration = Duration::from_secs(120);
/// Long enough for a command (or a server's shutdown) to finish.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// The binary with only the environment a test gives it, on `dir`'s data dir.
fn tenantgraph(dir: &TestDir, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenantgraph"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATA_DIR", dir.data_dir())
        .env(
            "JWT_SECRET",
            "embedded-test-secret-embedded-test-secret-0123",
        )
        .env("BOOTSTRAP_ADMIN_EMAIL", OPERATOR_EMAIL)
        .env("BOOTSTRAP_ADMIN_PASSWORD", OPERATOR_PASSWORD)
        .env("RUST_LOG", "info");
    if let Some(pg_bin) = std::env::var_os("PG_BIN") {
        command.env("PG_BIN", pg_bin);
    }
    command
}

/// A child process whose output goes to files beside the data dir; killed (and reaped) on drop,
/// so a failing test leaves no process behind.
struct Process {
    child: std::process::Child,
    output: PathBuf,
}

impl Process {
    fn spawn(dir: &TestDir, name: &str, mut command: std::process::Command) -> Process {
        let output = dir.path.join(format!("{name}.out"));
        let stdout = std::fs::File::create(&output).unwrap();
        let stderr = std::fs::File::create(output.with_extension("err")).unwrap();
        let child = command.stdout(stdout).stderr(stderr).spawn().unwrap();
        Process { child, output }
    }

    /// Runs `command` to its end, within [`EXIT_WITHIN`].
    fn run(dir: &TestDir, name: &str, command: std::process::Command) -> Process {
        let mut process = Process::spawn(dir, name, command);
        process.wait();
        process
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits, within [`EXIT_WITHIN`], for the process to exit.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + EXIT_WITHIN;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {} s\n{}",
                EXIT_WITHIN.as_secs(),
                self.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.output.with_extension("err")).unwrap_or_default()
    }

    /// Both outputs, for assertion messages.
    fn report(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr())
    }

    /// The process ran and exited successfully.
    fn assert_success(&mut self) {
        let status = self.wait();
        assert!(status.success(), "{status}\n{}", self.report());
    }

    fn signal(&mut self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tenantgraph serve` on a free loopback port.
struct Server {
    process: Process,
    address: String,
    http: reqwest::Client,
}

impl Server {
    /// Starts the server and waits until `/health/db` answers 200.
    async fn start(dir: &TestDir) -> Server {
        let address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let mut command = tenantgraph(dir, &["serve"]);
        command.env("BIND_ADDR", &address);
        let mut server = Server {
            process: Process::spawn(dir, "serve", command),
            address,
            // Each poll is bounded: the port accepts connections before the server answers them.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + SERVE_WITHIN;
        while server.health_db().await != Some(200) {
            if let Some(status) = server.process.exited() {
                panic!("serve exited ({status})\n{}", server.process.report());
            }
            assert!(
                Instant::now() < deadline,
                "/health/db not ready within {} s\n{}",
                SERVE_WITHIN.as_secs(),
                server.process.report()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    /// The status `/health/db` answers, if it answers.
    async fn health_db(&self) -> Option<u16> {
        let response = self
            .http
            .get(format!("http://{}/health/db", self.address))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// The `data` of a GraphQL response without errors.
    async fn graphql(
        &self,
        query: &str,
        variables: serde_json::Value,
        token: Option<&str>,
    ) -> serde_json::Value {
        let mut request = self
            .http
            .post(format!("http://{}/graphql", self.address))
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    async fn operator_token(&self) -> String {
        let data = self
            .graphql(
                "mutation($input: LoginInput!) { login(input: $input) { token } }",
                serde_json::json!({
                    "input": { "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD }
                }),
                None,
            )
            .await;
        data["login"]["token"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn commands_run_beside_a_live_server_leave_its_database_running() {
    let dir = TestDir::new("beside-server");
    let mut server = Server::start(&dir).await;
    let pid = postmaster_pid(&dir.data_dir()).expect("the server started a cluster");
    let token = server.operator_token().await;
    server
        .graphql(
            "mutation($input: CreateTenantInput!) { createTenant(input: $input) { tenant { id } } }",
            serde_json::json!({ "input": {
                "tenantName": "Beside", "domain": "beside", "email": "office@beside.example"
            } }),
            Some(&token),
        )
        .await;

    let mut list = Process::run(&dir, "list", tenantgraph(&dir, &["tenants", "list"]));
    list.assert_success();
    assert!(list.stdout().contains("tenant_beside"), "{}", list.report());
    let mut migrate = Process::run(
        &dir,
        "migrate",
        tenantgraph(&dir, &["migrate", "tenants", "up"]),
    );
    migrate.assert_success();
    assert!(
        migrate
            .stdout()
            .contains("every tenant is at the target revision"),
        "{}",
        migrate.report()
    );
    // Backup and restore use the server's cluster with pg_dump and pg_restore.
    let file = dir.path.join("beside.tgb");
    let file = file.to_str().unwrap();
    let mut backup = Process::run(
        &dir,
        "backup",
        tenantgraph(
            &dir,
            &["tenants", "backup", "--tenant", "beside", "--out", file],
        ),
    );
    backup.assert_success();
    let mut restore = Process::run(
        &dir,
        "restore",
        tenantgraph(
            &dir,
            &["tenants", "restore", "--file", file, "--as", "beside-copy"],
        ),
    );
    restore.assert_success();
    assert!(
        restore.stdout().contains("health: HEALTHY"),
        "{}",
        restore.report()
    );
    // A second server on the same data dir and the same address gives up, touching nothing.
    let mut second = tenantgraph(&dir, &["serve"]);
    second.env("BIND_ADDR", &server.address);
    let mut second = Process::run(&dir, "second-serve", second);
    assert!(!second.wait().success(), "{}", second.report());
    assert!(
        second.stderr().contains(&server.address),
        "{}",
        second.report()
    );

    assert_eq!(server.health_db().await, Some(200));
    let data = server
        .graphql(
            "{ tenants { totalCount nodes { domain status } } }",
            serde_json::Value::Null,
            Some(&token),
        )
        .await;
    assert_eq!(data["tenants"]["totalCount"], 2, "{data}");
    assert_eq!(data["tenants"]["nodes"][0]["status"], "ACTIVE", "{data}");
    assert_eq!(
        data["tenants"]["nodes"][1]["domain"], "beside-copy",
        "{data}"
    );
    assert_eq!(data["tenants"]["nodes"][1]["status"], "ACTIVE", "{data}");
    assert_eq!(
        postmaster_pid(&dir.data_dir()),
        Some(pid),
        "the server's cluster was never restarted"
    );

    // The server, the last user, stops the cluster on its way out.
    server.process.signal(Signal::SIGTERM);
    server.process.assert_success();
    assert_server_gone(&dir, pid);
}

#[tokio::test]
async fn a_command_after_a_killed_server_uses_the_cluster_left_behind_and_stops_it() {
    let dir = TestDir::new("after-kill");
    let mut server = Server::start(&dir).await;
    let pid = postmaster_pid(&dir.data_dir()).expect("the server started a cluster");
    server.process.signal(Signal::SIGKILL);
    server.process.wait();
    assert_eq!(
        postmaster_pid(&dir.data_dir()),
        Some(pid),
        "the cluster outlives the killed server"
    );

    let mut list = Process::run(&dir, "list", tenantgraph(&dir, &["tenants", "list"]));
    list.assert_success();
    assert_server_gone(&dir, pid);
}

#[test]
fn serve_on_an_address_in_use_fails_at_once_and_starts_no_database() {
    let dir = TestDir::new("address-in-use");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = squatter.local_addr().unwrap().to_string();
    let mut command = tenantgraph(&dir, &["serve"]);
    command.env("BIND_ADDR", &address);

    let mut serve = Process::run(&dir, "serve", command);
    assert!(!serve.wait().success(), "{}", serve.report());
    let stderr = serve.stderr();
    assert_eq!(stderr.trim().lines().count(), 1, "{}", serve.report());
    assert!(
        stderr.contains(&address) && stderr.contains("BIND_ADDR"),
        "{}",
        serve.report()
    );
    assert_eq!(postmaster_pid(&dir.data_dir()), None, "{}", serve.report());
    assert!(
        !dir.data_dir().join("postgres").exists(),
        "no cluster was even initialised"
    );
}

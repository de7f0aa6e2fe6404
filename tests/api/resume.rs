//! Batches that survive their server: resumed after a crash by the restarted server, taken
//! over by another live one, drained on SIGTERM; every step interrupted and redone exactly once.
//! The servers are the real binary, killed for real.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, Statement, TransactionTrait, sqlx::Connection,
};
use serde_json::{Value, json};

use crate::{
    batch::{MIGRATE, PROGRESS, PROVISION, inputs},
    helpers::{
        Gql, JWT_SECRET, OPERATOR_EMAIL, OPERATOR_PASSWORD, OWN_SUBSCRIPTIONS, TestDatabase,
        WsClient, WsEvent, free_port,
    },
};

/// Generous: an unoptimised binary on a machine shared with other builds.
const DEADLINE: Duration = Duration::from_secs(180);

/// The server binary as a child process, killed when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    async fn start(database_url: &str, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenantgraph"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", JWT_SECRET)
            .env("BOOTSTRAP_ADMIN_EMAIL", OPERATOR_EMAIL)
            .env("BOOTSTRAP_ADMIN_PASSWORD", OPERATOR_PASSWORD)
            .env("MAX_CONCURRENT_OPERATIONS", "2")
            .env("BATCH_TAKEOVER_INTERVAL_MS", "500")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let server = Server {
            child: command.spawn().expect("the server binary starts"),
            port,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if client.get(server.url("/health")).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not come up");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn graphql(&self, query: &str, variables: Value, token: Option<&str>) -> Gql {
        let mut request = reqwest::Client::new()
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Gql(request.send().await.unwrap().json().await.unwrap())
    }

    async fn operator_token(&self) -> String {
        let login = self
            .graphql(
                "mutation($i: LoginInput!) { login(input: $i) { token } }",
                json!({ "i": { "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD } }),
                None,
            )
            .await;
        login.data()["login"]["token"].as_str().unwrap().to_owned()
    }

    /// A progress subscription on this server, started now, collected in the background.
    async fn follow(&self, token: &str, batch_id: &str) -> tokio::task::JoinHandle<Vec<Value>> {
        let mut socket =
            WsClient::connect(&format!("ws://127.0.0.1:{}/graphql/ws", self.port), None).await;
        assert_eq!(
            socket.init(Some(token)).await.message()["type"],
            "connection_ack"
        );
        socket
            .subscribe("progress", PROGRESS, json!({ "id": batch_id }))
            .await;
        tokio::spawn(async move {
            let mut events = Vec::new();
            loop {
                match socket.next_event().await {
                    WsEvent::Message(message) if message["type"] == "next" => {
                        events.push(message["payload"]["data"]["provisioningProgress"].clone());
                    }
                    WsEvent::Message(message) if message["type"] == "complete" => return events,
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
    }

    /// SIGTERM, then the exit (within the deadline).
    async fn terminate(self) -> std::process::ExitStatus {
        self.stop_taking_work().await;
        self.exited().await
    }

    /// SIGTERM; returns once the server has begun to drain (it closes its listener after it
    /// stopped starting jobs).
    async fn stop_taking_work(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
        {
            assert!(
                started.elapsed() < DEADLINE,
                "the server kept listening after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The exit (within the deadline).
    async fn exited(mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not stop after SIGTERM");
    }
}

impl Drop for Server {
    /// SIGKILL: the server dies at once, whatever it was doing.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backends of the test's database waiting for a lock (held by [`Db::hold_at_create_schema`]).
const WAITING_ON_A_LOCK: &str =
    "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";

/// Reads the test's database directly.
struct Db(sea_orm::DatabaseConnection);

impl Db {
    async fn open(database: &TestDatabase) -> Db {
        Db(tenantgraph::db::open_pool(&database.url, 2).await.unwrap())
    }

    async fn count(&self, sql: &str) -> i64 {
        self.0
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    }

    /// Polls `sql` until it counts at least `at_least`, within the deadline.
    async fn until(&self, sql: &str, at_least: i64) -> i64 {
        let started = Instant::now();
        loop {
            let count = self.count(sql).await;
            if count >= at_least {
                return count;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "waited in vain for {at_least} of: {sql} (now {count})"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn finished(&self, batch_id: &str) {
        self.until(
            &format!(
                "SELECT count(*) FROM public.provisioning_batches WHERE id = '{batch_id}' AND finished_at IS NOT NULL"
            ),
            1,
        )
        .await;
    }

    /// Holds the tenants of `schemas` at `CREATE SCHEMA` (which runs before any `lock_timeout`
    /// is set): the returned transaction is making the same schemas, so theirs wait until it
    /// ends. A batch with one of them cannot finish, however slowly the test runs.
    async fn hold_at_create_schema(&self, schemas: &[&str]) -> DatabaseTransaction {
        let blocker = self.0.begin().await.unwrap();
        for schema in schemas {
            blocker
                .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
        }
        blocker
    }

    /// `server` killed (SIGKILL) once its batch `batch_id` waits for `blocker` (see
    /// [`Db::hold_at_create_schema`]); returns once the killed server's connections are gone.
    /// The killed server's waiting statements are ended before `blocker` lets go: released,
    /// they would run on.
    async fn kill_mid_batch(&self, blocker: DatabaseTransaction, server: Server, batch_id: &str) {
        self.until(&format!("SELECT count(*) {WAITING_ON_A_LOCK}"), 1)
            .await;
        drop(server);
        self.assert_unfinished(batch_id).await;
        self.count(&format!(
            "SELECT count(pg_terminate_backend(pid)) {WAITING_ON_A_LOCK}"
        ))
        .await;
        blocker.rollback().await.unwrap();
        self.others_gone().await;
    }

    async fn assert_unfinished(&self, batch_id: &str) {
        let unfinished = self
            .count(&format!(
                "SELECT count(*) FROM public.provisioning_batches WHERE id = '{batch_id}' AND finished_at IS NULL"
            ))
            .await;
        assert_eq!(unfinished, 1, "the kill came mid-batch");
    }

    /// Until the database has no connection but this handle's: a killed server's are gone.
    async fn others_gone(&self) {
        let started = Instant::now();
        loop {
            let others = self.count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            )
            .await;
            if others <= 1 {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the killed server's connections stay"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn start_batch(server: &Server, token: &str, tenants: Vec<Value>, options: Value) -> String {
    let started = server
        .graphql(
            PROVISION,
            json!({ "tenants": tenants, "options": options }),
            Some(token),
        )
        .await;
    started.data()["provisionTenants"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Starts a fleet migration of every tenant down to base, one tenant at a time; its batch id.
async fn start_migration_to_base(server: &Server, token: &str) -> String {
    let started = server
        .graphql(
            MIGRATE,
            json!({ "target": "base", "confirm": "base", "options": { "maxConcurrency": 1 } }),
            Some(token),
        )
        .await;
    started.data()["migrateTenants"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

const BATCH: &str = "query($id: ID!) { provisioningBatch(id: $id) { status results { domain status attempts resumed apiKey tenantId } summary { successful failed } } }";

/// Every tenant of a finished batch succeeded, once each, with nothing left over.
async fn assert_every_tenant_made_once(
    db: &Db,
    server: &Server,
    token: &str,
    batch_id: &str,
    total: i64,
) -> Value {
    let response = server
        .graphql(BATCH, json!({ "id": batch_id }), Some(token))
        .await;
    let batch = response.data()["provisioningBatch"].clone();
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(batch["summary"]["successful"], total, "{batch}");
    for result in batch["results"].as_array().unwrap() {
        assert_eq!(result["status"], "SUCCEEDED", "{result}");
        assert!(
            result["apiKey"].is_null(),
            "a background batch never shows keys"
        );
    }
    let tenants = db
        .count("SELECT count(*) FROM public.tenants WHERE status = 'ACTIVE'")
        .await;
    assert_eq!(tenants, total);
    assert_eq!(db.count("SELECT count(*) FROM public.tenants").await, total);
    let schemas = db
        .count("SELECT count(*) FROM pg_namespace WHERE nspname IN (SELECT schema_name FROM public.tenants)")
        .await;
    assert_eq!(schemas, total, "one schema a tenant");
    let orphans = db
        .count("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%' AND nspname NOT IN (SELECT schema_name FROM public.tenants)")
        .await;
    assert_eq!(orphans, 0, "no schema without a tenant");
    let keys = db
        .count("SELECT count(*) FROM public.tenants WHERE api_key_hash IS NOT NULL")
        .await;
    assert_eq!(keys, total, "one key a tenant");
    let audited = db
        .count("SELECT count(*) FROM public.audit_events WHERE action = 'tenant.create' AND outcome = 'SUCCESS'")
        .await;
    assert_eq!(audited, total, "one audit row a tenant made, no duplicate");
    let distinct = db
        .count("SELECT count(DISTINCT tenant_id) FROM public.audit_events WHERE action = 'tenant.create' AND outcome = 'SUCCESS' AND tenant_id IN (SELECT id FROM public.tenants)")
        .await;
    assert_eq!(distinct, total);
    batch
}

/// The events of a whole batch: `seq` 0, 1, 2… without gap or repeat, one `DONE` a tenant,
/// the batch's own `DONE` last with every tenant counted.
fn assert_complete_log(events: &[Value], total: i64) {
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..events.len() as i64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let mut done: HashMap<&str, usize> = HashMap::new();
    for event in events
        .iter()
        .filter(|e| e["step"] == "DONE" && e["tenantName"].is_string())
    {
        *done
            .entry(event["tenantName"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(done.len() as i64, total, "{done:?}");
    assert!(
        done.values().all(|n| *n == 1),
        "one DONE a tenant: {done:?}"
    );
    let last = events.last().unwrap();
    assert!(
        last["tenantName"].is_null() && last["step"] == "DONE" && last["completed"] == total,
        "{last}"
    );
}

#[tokio::test]
async fn a_server_killed_mid_batch_resumes_every_tenant_after_a_restart() {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    let first = Server::start(&database.url, &[]).await;
    let token = first.operator_token().await;
    // Both of its runner's slots end up waiting, with ten tenants made and 28 still to go.
    let blocker = db
        .hold_at_create_schema(&["tenant_crash_10", "tenant_crash_11"])
        .await;
    let batch_id = start_batch(
        &first,
        &token,
        inputs("crash", 40),
        json!({ "maxConcurrency": 2 }),
    )
    .await;

    db.kill_mid_batch(blocker, first, &batch_id).await;

    let second = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let batch = assert_every_tenant_made_once(&db, &second, &token, &batch_id, 40).await;
    for result in batch["results"].as_array().unwrap() {
        let attempts = result["attempts"].as_i64().unwrap();
        if result["resumed"] == true {
            assert!((1..=2).contains(&attempts), "{result}");
        } else {
            assert_eq!(attempts, 1, "{result}");
        }
    }
    let events = second.follow(&token, &batch_id).await.await.unwrap();
    assert_complete_log(&events, 40);
}

#[tokio::test]
async fn a_batch_resumed_after_a_crash_applies_the_template_it_was_submitted_with() {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    let first = Server::start(&database.url, &[]).await;
    let token = first.operator_token().await;
    first
        .graphql(
            "mutation($input: TenantTemplateInput!) { createTenantTemplate(input: $input) { id } }",
            json!({ "input": {
                "name": "Church",
                "tenantType": "church",
                "settings": { "features": ["analytics"] },
                "roles": [{ "name": "auditor", "permissions": ["people:read"] }],
            } }),
            Some(&token),
        )
        .await
        .data();
    // One at a time, the sixth held until the kill.
    let total = 20;
    let blocker = db.hold_at_create_schema(&["tenant_tpl_5"]).await;
    let tenants = inputs("tpl", total)
        .into_iter()
        .map(|mut tenant| {
            tenant["tenantType"] = json!("church");
            tenant
        })
        .collect();
    let batch_id = start_batch(&first, &token, tenants, json!({ "maxConcurrency": 1 })).await;
    db.kill_mid_batch(blocker, first, &batch_id).await;
    // Gone while no server runs: the resumed jobs still get what they were submitted with.
    db.0.execute_unprepared("DELETE FROM public.tenant_templates")
        .await
        .unwrap();

    let second = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let batch = assert_every_tenant_made_once(&db, &second, &token, &batch_id, total as i64).await;
    assert!(
        batch["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|result| result["resumed"] == true),
        "{batch}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants WHERE settings->'features' ? 'analytics'")
            .await,
        total as i64
    );
    for i in 0..total {
        let auditors = db
            .count(&format!(
                "SELECT count(*) FROM tenant_tpl_{i}.roles r \
                   JOIN tenant_tpl_{i}.role_permissions rp ON rp.role_id = r.id \
                   JOIN tenant_tpl_{i}.permissions p ON p.id = rp.permission_id \
                  WHERE r.name = 'auditor' AND p.code = 'people:read'"
            ))
            .await;
        assert_eq!(auditors, 1, "tenant tpl-{i} has the template's role");
    }
}

#[tokio::test]
async fn an_atomic_batch_resumed_after_a_crash_is_rolled_back_as_a_whole_when_a_tenant_fails() {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    // A schema nobody registered makes the last tenant fail, after the others were made.
    db.0.execute_unprepared("CREATE SCHEMA tenant_atomic_9")
        .await
        .unwrap();
    let first = Server::start(&database.url, &[]).await;
    let token = first.operator_token().await;
    let batch_id = start_batch(
        &first,
        &token,
        inputs("atomic", 10),
        json!({ "maxConcurrency": 2, "atomic": true }),
    )
    .await;
    db.until(
        "SELECT count(*) FROM public.tenants WHERE status = 'ACTIVE'",
        2,
    )
    .await;
    drop(first);
    db.others_gone().await;

    let second = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let response = second
        .graphql(BATCH, json!({ "id": batch_id }), Some(&token))
        .await;
    let batch = &response.data()["provisioningBatch"];
    assert_eq!(batch["status"], "ROLLED_BACK", "{batch}");
    let statuses: Vec<&str> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "FAILED").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "ROLLED_BACK").count(),
        9,
        "{statuses:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants").await,
        0,
        "made before the crash or after, every tenant is undone"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_%'")
            .await,
        1,
        "only the stranger's schema is left"
    );
}

#[tokio::test]
async fn sigterm_mid_batch_drains_the_running_tenants_and_the_next_server_resumes_the_rest() {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    let first = Server::start(&database.url, &[("SHUTDOWN_GRACE_SECONDS", "60")]).await;
    let token = first.operator_token().await;
    // Both slots held at tenants 10 and 11 until the server drains: 18 still to go by then.
    let blocker = db
        .hold_at_create_schema(&["tenant_drain_10", "tenant_drain_11"])
        .await;
    let batch_id = start_batch(
        &first,
        &token,
        inputs("drain", 30),
        json!({ "maxConcurrency": 2 }),
    )
    .await;
    db.until(&format!("SELECT count(*) {WAITING_ON_A_LOCK}"), 2)
        .await;
    first.stop_taking_work().await;
    // Released, the two held tenants are made; the drain waits for them.
    blocker.rollback().await.unwrap();
    let status = first.exited().await;
    assert!(
        status.success(),
        "a drained server exits cleanly: {status:?}"
    );

    // Drained: the jobs that were running finished, nothing half made, the rest left waiting.
    let jobs = |status: &str| {
        format!(
            "SELECT count(*) FROM public.provisioning_jobs WHERE batch_id = '{batch_id}' AND status = '{status}'"
        )
    };
    assert_eq!(db.count(&jobs("RUNNING")).await, 0, "no job cut off");
    let succeeded = db.count(&jobs("SUCCEEDED")).await;
    assert!(db.count(&jobs("PENDING")).await > 0, "the rest is left");
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants WHERE status = 'ACTIVE'")
            .await,
        succeeded
    );
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants WHERE status <> 'ACTIVE'")
            .await,
        0,
        "nothing half made"
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM public.provisioning_batches WHERE id = '{batch_id}' AND finished_at IS NULL")).await,
        1
    );

    let second = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let batch = assert_every_tenant_made_once(&db, &second, &token, &batch_id, 30).await;
    assert!(
        batch["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["resumed"] == false && r["attempts"] == 1),
        "a drain interrupts nothing: {batch}"
    );
    let events = second.follow(&token, &batch_id).await.await.unwrap();
    assert_complete_log(&events, 30);

    // A fleet migration drains the same way.
    drop(second);
    db.others_gone().await;
    let third = Server::start(&database.url, &[("SHUTDOWN_GRACE_SECONDS", "60")]).await;
    let batch_id = start_migration_to_base(&third, &token).await;
    let jobs = |status: &str| {
        format!(
            "SELECT count(*) FROM public.provisioning_jobs WHERE batch_id = '{batch_id}' AND status = '{status}'"
        )
    };
    db.until(&jobs("SUCCEEDED"), 2).await;
    assert!(third.terminate().await.success());
    assert_eq!(db.count(&jobs("RUNNING")).await, 0, "no job cut off");
    assert!(db.count(&jobs("PENDING")).await > 0, "the rest is left");
    let at_base = db
        .count("SELECT count(*) FROM public.tenants WHERE current_revision IS NULL")
        .await;
    assert_eq!(at_base, db.count(&jobs("SUCCEEDED")).await);

    let fourth = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let response = fourth
        .graphql(BATCH, json!({ "id": batch_id }), Some(&token))
        .await;
    let batch = &response.data()["provisioningBatch"];
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants WHERE current_revision IS NULL")
            .await,
        30,
        "every tenant at base"
    );
    let events = fourth.follow(&token, &batch_id).await.await.unwrap();
    assert_complete_log(&events, 30);
}

#[tokio::test]
async fn when_the_runner_dies_another_server_finishes_the_batch_and_its_subscribers_miss_nothing() {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    let runner = Server::start(&database.url, &[]).await;
    let survivor = Server::start(&database.url, &[]).await;
    let token = runner.operator_token().await;

    // Provisioning: started on one server, followed on the other.
    let batch_id = start_batch(
        &runner,
        &token,
        inputs("takeover", 16),
        json!({ "maxConcurrency": 2 }),
    )
    .await;
    let events = survivor.follow(&token, &batch_id).await;
    db.until(
        "SELECT count(*) FROM public.tenants WHERE status = 'ACTIVE'",
        2,
    )
    .await;
    drop(runner);
    let events = tokio::time::timeout(DEADLINE, events)
        .await
        .expect("the batch completes")
        .unwrap();
    assert_complete_log(&events, 16);
    assert_every_tenant_made_once(&db, &survivor, &token, &batch_id, 16).await;

    // A fleet migration: the same.
    let runner = Server::start(&database.url, &[]).await;
    let batch_id = start_migration_to_base(&runner, &token).await;
    let events = survivor.follow(&token, &batch_id).await;
    db.until(
        &format!("SELECT count(*) FROM public.provisioning_jobs WHERE batch_id = '{batch_id}' AND status = 'SUCCEEDED'"),
        2,
    )
    .await;
    drop(runner);
    let events = tokio::time::timeout(DEADLINE, events)
        .await
        .expect("the migration completes")
        .unwrap();
    assert_complete_log(&events, 16);
    let response = survivor
        .graphql(BATCH, json!({ "id": batch_id }), Some(&token))
        .await;
    let batch = &response.data()["provisioningBatch"];
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants WHERE current_revision IS NULL")
            .await,
        16,
        "every tenant at base"
    );
}

/// Pauses each tenant of the fault batch at its own step, holding it on an advisory lock the
/// test holds: `fault-register` inserting its registry row (with its API key), `fault-schema`
/// creating its schema, `fault-migrate` migrating it, `fault-seed` seeding its administrator,
/// `fault-verify` activating it, and `fault-done` after everything committed, recording the
/// job's end.
const PAUSES: &str = r#"
CREATE FUNCTION public.fault_pause() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
CREATE TRIGGER fault_register BEFORE INSERT ON public.tenants FOR EACH ROW
    WHEN (NEW.domain = 'fault-register') EXECUTE FUNCTION public.fault_pause();
CREATE TRIGGER fault_verify BEFORE UPDATE ON public.tenants FOR EACH ROW
    WHEN (NEW.domain = 'fault-verify' AND NEW.status = 'ACTIVE') EXECUTE FUNCTION public.fault_pause();
CREATE TRIGGER fault_done BEFORE UPDATE ON public.provisioning_jobs FOR EACH ROW
    WHEN (NEW.domain = 'fault-done' AND NEW.status = 'SUCCEEDED') EXECUTE FUNCTION public.fault_pause();
CREATE FUNCTION public.fault_pause_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE made record;
BEGIN
    FOR made IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
        IF made.object_identity = 'tenant_fault_schema'
           OR made.object_identity LIKE 'tenant_fault_migrate.%' THEN
            PERFORM pg_advisory_xact_lock_shared(4242);
        END IF;
        IF made.command_tag = 'CREATE TABLE' AND made.object_identity = 'tenant_fault_seed.users' THEN
            EXECUTE format('CREATE TRIGGER fault_seed BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION public.fault_pause()', made.object_identity);
        END IF;
    END LOOP;
END $$;
CREATE EVENT TRIGGER fault_pause_ddl ON ddl_command_end EXECUTE FUNCTION public.fault_pause_ddl();
"#;

const STEPS: [&str; 6] = ["register", "schema", "migrate", "seed", "verify", "done"];

#[tokio::test]
async fn a_server_killed_at_each_step_of_provisioning_is_undone_and_redone_exactly_once() {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    db.0.execute_unprepared(PAUSES).await.unwrap();
    let mut pause = sea_orm::sqlx::PgConnection::connect(&database.url)
        .await
        .unwrap();
    sea_orm::sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut pause)
        .await
        .unwrap();

    let first = Server::start(
        &database.url,
        &[
            ("MAX_CONCURRENT_OPERATIONS", "6"),
            ("DATABASE_MAX_CONNECTIONS", "12"),
        ],
    )
    .await;
    let token = first.operator_token().await;
    let tenants: Vec<Value> = STEPS
        .iter()
        .map(|step| {
            let mut input = crate::helpers::tenant_input(&format!("fault-{step}"));
            input["admin"] = json!({ "email": format!("admin@fault-{step}.example"), "password": "a-long-admin-password" });
            input
        })
        .collect();
    let batch_id = start_batch(&first, &token, tenants, json!({ "maxConcurrency": 6 })).await;
    // Every tenant held at its step.
    db.until(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        6,
    )
    .await;
    drop(first);
    // The held work goes on only to find its server gone, and rolls back.
    pause.close().await.unwrap();
    db.others_gone().await;

    let second = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let batch = assert_every_tenant_made_once(&db, &second, &token, &batch_id, 6).await;
    for result in batch["results"].as_array().unwrap() {
        // What had committed is kept; anything else is made again, once. The held end of
        // `fault-done` had been sent whole with its events (the batch's records go in one
        // script per bulk): let go, it commits although its server is gone, so that job ended
        // on the first server.
        let (resumed, attempts) = if result["domain"] == "fault-done" {
            (false, 1)
        } else {
            (true, 2)
        };
        assert_eq!(result["resumed"], resumed, "{result}");
        assert_eq!(result["attempts"], attempts, "{result}");
    }
    let admins = db
        .count(
            "SELECT count(*) FROM tenant_fault_seed.users WHERE email = 'admin@fault-seed.example'",
        )
        .await;
    assert_eq!(admins, 1, "one administrator");
    let events = second.follow(&token, &batch_id).await.await.unwrap();
    assert_complete_log(&events, 6);
    for step in STEPS {
        let of = |e: &&Value| e["tenantName"] == format!("Tenant fault-{step}");
        let rollbacks = events
            .iter()
            .filter(of)
            .filter(|e| e["step"] == "ROLLBACK" && e["status"] == "SUCCEEDED")
            .count();
        // The half-made tenant is undone once. (The registry row's insert had been sent whole:
        // let go, it commits even though its server is gone.) What had committed is kept.
        let expected = if step == "done" { 0 } else { 1 };
        let story: Vec<String> = events
            .iter()
            .filter(of)
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e["seq"], e["step"], e["status"], e["message"]
                )
            })
            .collect();
        assert_eq!(rollbacks, expected, "{step}: {story:#?}");
        let verified = events
            .iter()
            .filter(of)
            .filter(|e| e["step"] == "VERIFY" && e["status"] == "SUCCEEDED")
            .count();
        assert_eq!(verified, 1, "{step} verified once");
    }
}

#[tokio::test]
async fn an_atomic_bulk_update_killed_mid_batch_resumes_and_undoes_the_changes_made_before_the_crash()
 {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    let first = Server::start(&database.url, &[]).await;
    let token = first.operator_token().await;
    let total = 8;
    first
        .graphql(
            PROVISION,
            json!({ "tenants": inputs("bulk", total), "options": { "wait": true } }),
            Some(&token),
        )
        .await
        .data();
    first
        .graphql(
            "mutation($input: TenantTemplateInput!) { createTenantTemplate(input: $input) { id } }",
            json!({ "input": {
                "name": "Audited",
                "settings": { "features": ["reporting"] },
                "roles": [{ "name": "auditor", "permissions": ["people:read"] }],
            } }),
            Some(&token),
        )
        .await
        .data();
    // In domain order (bulk-0 … bulk-7): a batch creates its tenants concurrently, so their
    // creation order, which the listing follows, is not theirs.
    let mut listed: Vec<(String, String)> = first
        .graphql(
            "{ tenants(first: 20) { nodes { id domain } } }",
            json!({}),
            Some(&token),
        )
        .await
        .data()["tenants"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let field = |name: &str| node[name].as_str().unwrap().to_owned();
            (field("domain"), field("id"))
        })
        .collect();
    listed.sort();
    let ids: Vec<String> = listed.into_iter().map(|(_, id)| id).collect();
    // The last tenant fails once the batch is resumed: its schema is gone. The fourth one's
    // change is held on a lock the test holds, and the server is killed meanwhile.
    db.0.execute_unprepared(
        "DROP SCHEMA tenant_bulk_7 CASCADE;
         CREATE FUNCTION public.hold_update() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
         CREATE TRIGGER hold_update BEFORE UPDATE ON public.tenants FOR EACH ROW
           WHEN (NEW.domain = 'bulk-3' AND NEW.tenant_type = 'audited')
           EXECUTE FUNCTION public.hold_update();",
    )
    .await
    .unwrap();
    let mut hold = sea_orm::sqlx::PgConnection::connect(&database.url)
        .await
        .unwrap();
    sea_orm::sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut hold)
        .await
        .unwrap();
    let started = first
        .graphql(
            crate::bulk_update::UPDATE,
            json!({
                "ids": ids,
                "input": { "template": "Audited", "tenantType": "audited" },
                "options": { "atomic": true, "maxConcurrency": 1 },
            }),
            Some(&token),
        )
        .await;
    let batch_id = started.data()["updateTenants"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    db.until(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        1,
    )
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants WHERE tenant_type = 'audited'")
            .await,
        3,
        "three tenants changed before the crash"
    );
    drop(first);
    hold.close().await.unwrap();
    db.others_gone().await;

    let second = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let response = second
        .graphql(BATCH, json!({ "id": batch_id }), Some(&token))
        .await;
    let batch = &response.data()["provisioningBatch"];
    assert_eq!(batch["status"], "ROLLED_BACK", "{batch}");
    for result in batch["results"].as_array().unwrap() {
        let (status, resumed, attempts) = match result["domain"].as_str().unwrap() {
            "bulk-7" => ("FAILED", false, 1),
            "bulk-3" => ("ROLLED_BACK", true, 2),
            _ => ("ROLLED_BACK", false, 1),
        };
        assert_eq!(
            (&result["status"], &result["resumed"], &result["attempts"]),
            (&json!(status), &json!(resumed), &json!(attempts)),
            "{result}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM public.tenants WHERE tenant_type = 'audited' OR settings->'features' ? 'reporting'")
            .await,
        0,
        "changed before the crash or after, every tenant is as it was"
    );
    for i in 0..total - 1 {
        let auditors = db
            .count(&format!(
                "SELECT count(*) FROM tenant_bulk_{i}.roles WHERE name = 'auditor'"
            ))
            .await;
        assert_eq!(auditors, 0, "bulk-{i} lost the template's role again");
    }
    let audited = |undone: bool| {
        format!(
            "SELECT count(*) FROM public.audit_events WHERE action = 'tenant.update' AND outcome = 'SUCCESS' \
               AND (detail->>'undone' IS NOT NULL) = {undone}"
        )
    };
    assert_eq!(db.count(&audited(false)).await, 7, "one change a tenant");
    assert_eq!(db.count(&audited(true)).await, 7, "one undoing a tenant");
    let events = second.follow(&token, &batch_id).await.await.unwrap();
    assert_complete_log(&events, total as i64);
}

#[tokio::test]
async fn a_move_interrupted_by_a_crash_is_rolled_back_and_made_again_by_the_restarted_server() {
    let database = TestDatabase::create().await;
    let db = Db::open(&database).await;
    let (east, west) = (
        TestDatabase::create_on_second_server().await,
        TestDatabase::create_on_second_server().await,
    );
    let first = Server::start(&database.url, &[]).await;
    let token = first.operator_token().await;
    for (name, server) in [("east", &east), ("west", &west)] {
        first
            .graphql(
                "mutation($input: AddDatabaseServerInput!) { addDatabaseServer(input: $input) { name } }",
                json!({ "input": { "name": name, "url": server.url } }),
                Some(&token),
            )
            .await
            .data();
    }
    let created = first
        .graphql(
            "mutation($input: CreateTenantInput!) { createTenant(input: $input) { tenant { id schemaName } } }",
            json!({ "input": { "tenantName": "Crash Move", "domain": "crash-move.test", "email": "office@crash-move.test", "server": "east" } }),
            Some(&token),
        )
        .await;
    let tenant = &created.data()["createTenant"]["tenant"];
    let (id, schema) = (
        tenant["id"].as_str().unwrap().to_owned(),
        tenant["schemaName"].as_str().unwrap().to_owned(),
    );
    // Enough rows that the copy is still under way when the server is killed.
    let source = Db::open(&east).await;
    source
        .0
        .execute_unprepared(&format!(
            "INSERT INTO \"{schema}\".person (first_name, last_name) \
             SELECT 'Row' || n, 'Copied' FROM generate_series(1, 300000) AS n"
        ))
        .await
        .unwrap();
    let started = first
        .graphql(
            "mutation($id: ID!) { moveTenant(tenantId: $id, toServer: \"west\", options: { timeoutSeconds: 600 }) { id } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    let batch_id = started.data()["moveTenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = Db::open(&west).await;
    target.until(OWN_SUBSCRIPTIONS, 1).await;
    drop(first);
    let unfinished = db
        .count(&format!(
            "SELECT count(*) FROM public.provisioning_batches WHERE id = '{batch_id}' AND finished_at IS NULL"
        ))
        .await;
    assert_eq!(unfinished, 1, "the kill came mid-move");

    let second = Server::start(&database.url, &[]).await;
    db.finished(&batch_id).await;
    let batch = second
        .graphql(
            "query($id: ID!) { provisioningBatch(id: $id) { status summary { writePauseMs } results { status resumed server } } }",
            json!({ "id": batch_id }),
            Some(&token),
        )
        .await;
    let batch = &batch.data()["provisioningBatch"];
    assert_eq!(batch["status"], "SUCCEEDED", "{batch}");
    assert_eq!(batch["results"][0]["resumed"], true);
    assert_eq!(batch["results"][0]["server"], "west");
    assert!(batch["summary"]["writePauseMs"].as_i64().is_some());
    // Every row is on the target once, and nothing of the move is left on the source.
    assert_eq!(
        target
            .count(&format!("SELECT count(*) FROM \"{schema}\".person"))
            .await,
        300_000
    );
    assert_eq!(target.count(OWN_SUBSCRIPTIONS).await, 0);
    assert_eq!(
        source
            .count(&format!(
                "SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"
            ))
            .await
            + source
                .count(&format!(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tg_move_{}'",
                    id.replace('-', "")
                ))
                .await
            + source.count("SELECT count(*) FROM pg_publication").await,
        0
    );
}

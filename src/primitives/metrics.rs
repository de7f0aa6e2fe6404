//! Prometheus metrics: GraphQL request counts and latency per operation name, the number of SQL
//! statements sent, the password hashing jobs run or turned away, and the operations refused
//! for a tenant's or an operator's request rate. Served by `GET /metrics`.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// Distinct operation names tracked; names come from clients, so past this they count as `other`.
const MAX_OPERATION_LABELS: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationNameLabel {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    /// The tenant's id.
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PasswordJobLabel {
    /// `hash` or `verify`.
    kind: &'static str,
}

/// The server's metrics registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<OperationLabels, Counter>,
    durations: Family<OperationNameLabel, Histogram>,
    db_statements: Counter,
    password_jobs: Family<PasswordJobLabel, Counter>,
    password_queue_full: Counter,
    tenant_rate_limited: Family<TenantLabel, Counter>,
    platform_rate_limited: Counter,
    known_operations: Arc<Mutex<HashSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tenantgraph");
        let requests = Family::<OperationLabels, Counter>::default();
        registry.register(
            "graphql_requests",
            "GraphQL operations executed, by operation name and outcome",
            requests.clone(),
        );
        let durations = Family::<OperationNameLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "graphql_request_duration_seconds",
            "Time to execute a GraphQL operation, by operation name",
            durations.clone(),
        );
        let db_statements = Counter::default();
        registry.register(
            "db_statements",
            "SQL statements sent to PostgreSQL",
            db_statements.clone(),
        );
        let password_jobs = Family::<PasswordJobLabel, Counter>::default();
        registry.register(
            "password_jobs",
            "argon2id jobs run (kind hash or verify)",
            password_jobs.clone(),
        );
        let password_queue_full = Counter::default();
        registry.register(
            "password_queue_full",
            "Logins answered RATE_LIMITED because the password hashing queue was full",
            password_queue_full.clone(),
        );
        let tenant_rate_limited = Family::<TenantLabel, Counter>::default();
        registry.register(
            "tenant_rate_limited",
            "Operations refused RATE_LIMITED because their tenant was over its request rate",
            tenant_rate_limited.clone(),
        );
        let platform_rate_limited = Counter::default();
        registry.register(
            "platform_rate_limited",
            "Operations refused RATE_LIMITED because a platform operator was over their rate",
            platform_rate_limited.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            tenant_rate_limited,
            platform_rate_limited,
            requests,
            durations,
            db_statements,
            password_jobs,
            password_queue_full,
            known_operations: Arc::default(),
        }
    }
}

impl Metrics {
    /// Records one executed operation.
    pub fn record_operation(&self, operation_name: Option<&str>, ok: bool, elapsed: Duration) {
        let operation = self.operation_label(operation_name);
        self.requests
            .get_or_create(&OperationLabels {
                operation: operation.clone(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
        self.durations
            .get_or_create(&OperationNameLabel { operation })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_statement(&self) {
        self.db_statements.inc();
    }

    /// SQL statements sent so far.
    pub fn db_statements(&self) -> u64 {
        self.db_statements.get()
    }

    /// Records one argon2id job about to run: `verify` (a login) or `hash`.
    pub fn count_password_job(&self, verify: bool) {
        let kind = if verify { "verify" } else { "hash" };
        self.password_jobs
            .get_or_create(&PasswordJobLabel { kind })
            .inc();
    }

    /// Passwords verified so far (logins that reached argon2id).
    pub fn password_verifications(&self) -> u64 {
        self.password_jobs
            .get_or_create(&PasswordJobLabel { kind: "verify" })
            .get()
    }

    pub fn count_password_queue_full(&self) {
        self.password_queue_full.inc();
    }

    /// Logins turned away because the hashing queue was full.
    pub fn password_queue_full(&self) -> u64 {
        self.password_queue_full.get()
    }

    /// Counts one operation of `tenant` refused for its request rate.
    pub fn count_tenant_rate_limited(&self, tenant: uuid::Uuid) {
        self.tenant_rate_limited
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .inc();
    }

    /// Operations of `tenant` refused for its request rate so far.
    pub fn tenant_rate_limited(&self, tenant: uuid::Uuid) -> u64 {
        self.tenant_rate_limited
            .get(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .map_or(0, |counter| counter.get())
    }

    pub fn count_platform_rate_limited(&self) {
        self.platform_rate_limited.inc();
    }

    fn operation_label(&self, name: Option<&str>) -> String {
        let Some(name) = name.filter(|name| {
            name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }) else {
            return "anonymous".to_owned();
        };
        let mut known = self.known_operations.lock().expect("metrics lock poisoned");
        if known.contains(name) || known.len() < MAX_OPERATION_LABELS {
            known.insert(name.to_owned());
            name.to_owned()
        } else {
            "other".to_owned()
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

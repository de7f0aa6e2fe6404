//! Start-up: database, migrations, secrets, the first operator, then the listening server.

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::SecretString;
use tokio::net::TcpListener;

use crate::{
    auth::{
        access::Access, jwt::JwtKeys, listener, operators, password::PasswordHasherPool,
        rate_limit::RateLimits, sessions,
    },
    batch::{self, events::EventHub},
    config::Config,
    db::{
        self, embedded::EmbeddedPostgres, migrate, notify::AccessFeed, servers::DbServers,
        share::DbShares,
    },
    graphql,
    http::{self, HttpState},
    primitives::metrics::Metrics,
    state::{AppState, SharedState},
    tenancy::directory::TenantDirectory,
    webhooks,
};

/// How often a running server does its housekeeping: tenants that a stopped one left
/// half-provisioned outside any batch (batches are looked for every
/// `BATCH_TAKEOVER_INTERVAL_MS`), and sessions that can never be used again.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(60);

/// A server that is bound and ready to run.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: SharedState,
    embedded: Option<EmbeddedPostgres>,
    roots: graphql::Roots,
}

impl Application {
    /// Binds `BIND_ADDR` (port 0 picks a free port), then connects (starting the embedded
    /// cluster if needed), migrates `public` and makes sure an operator exists. An address in
    /// use fails before any database is started; a later failure stops the embedded cluster
    /// again unless another process uses it.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_serving(config, graphql::Roots::default()).await
    }

    /// [`Application::build`], serving `roots` (an application's merged with the built-in ones).
    pub async fn build_serving(config: Config, roots: graphql::Roots) -> anyhow::Result<Self> {
        let listener = bind(config.bind_addr).await?;
        let address = listener.local_addr()?;
        let connected = db::connect(&config).await?;
        match ready_state(config, connected.db).await {
            Ok(state) => Ok(Application {
                listener,
                address,
                state,
                embedded: connected.embedded,
                roots,
            }),
            Err(err) => {
                if let Some(embedded) = connected.embedded {
                    db::stop_after_failure(embedded).await;
                }
                Err(err)
            }
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then drains: starts no further tenant jobs, lets the
    /// running ones and open requests finish (within `SHUTDOWN_GRACE_SECONDS`), leaves the rest
    /// of every batch to the next server, and stops the embedded cluster if this process uses
    /// one and no other process still does.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let schema = self.roots.serve(self.state.clone());
        let app = http::router(HttpState {
            state: self.state.clone(),
            schema,
        });
        // Access events from the other servers; until it listens, caches are not used.
        let listener = listener::spawn(self.state.clone());
        let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
        let draining = self.state.clone();
        let server = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: draining batches");
            draining.batches.drain();
            let _ = stopping_tx.send(true);
        });
        tracing::info!(address = %self.address, "tenantgraph listening");
        // Batches whose server stopped (before ours started, or at any time since) are taken
        // over within one interval.
        let takeover_state = self.state.clone();
        let takeover = tokio::spawn(async move {
            let mut every = tokio::time::interval(takeover_state.config.batch_takeover_interval);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(err) = batch::recovery::take_over_unfinished(&takeover_state).await {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "looking for batches to take over failed; trying again later"
                    );
                }
            }
        });
        let recovery_state = self.state.clone();
        let recovery = tokio::spawn(async move {
            let mut every = tokio::time::interval(RECOVERY_INTERVAL);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(err) = housekeeping(&recovery_state).await {
                    tracing::warn!(
                        error = format!("{err:#}"),
                        "housekeeping failed; trying again later"
                    );
                }
            }
        });
        // Webhook deliveries: woken by the listener when new ones commit anywhere.
        let webhooks = tokio::spawn(webhooks::sender::run(self.state.clone()));
        let grace_period = self.state.config.shutdown_grace;
        let grace = async move {
            let mut stopping = stopping_rx;
            let _ = stopping.wait_for(|stopping| *stopping).await;
            tokio::time::sleep(grace_period).await;
        };
        let state = self.state.clone();
        let drained = async move {
            let served = server.await;
            state.batches.drained().await;
            served
        };
        tokio::select! {
            served = drained => served.context("server failed")?,
            () = grace => tracing::warn!("batch jobs or connections still running after the grace period; stopping them (the next server resumes the jobs)"),
        }
        takeover.abort();
        recovery.abort();
        // An attempt cut short here is claimed again when its lease lapses.
        webhooks.abort();
        listener.stop().await;
        self.state.servers.close().await;
        self.state.db.close_by_ref().await.ok();
        if let Some(embedded) = self.embedded {
            embedded.stop().await?;
        }
        Ok(())
    }
}

/// Listens on `address`; an address in use is one line naming it and `BIND_ADDR`.
async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|err| {
        if err.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "cannot listen on {address}: the address is already in use (by another program or \
                 another tenantgraph serve); stop it or set BIND_ADDR to a free address"
            )
        } else {
            anyhow::Error::new(err).context(format!("could not listen on {address} (BIND_ADDR)"))
        }
    })
}

/// The state of a server about to listen: migrated, with an operator.
async fn ready_state(config: Config, db: db::Pool) -> anyhow::Result<SharedState> {
    let state = prepare_state(config, db).await?;
    bootstrap_operator(&state).await?;
    Ok(state)
}

/// A server running in a task of its own, as the integration tests and the benchmark start one
/// in-process: it serves until the task is aborted.
pub struct Spawned {
    pub address: SocketAddr,
    pub state: SharedState,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Application {
    /// Serves in the background (see [`Spawned`]).
    pub fn spawn(self) -> Spawned {
        let address = self.address;
        let state = self.state.clone();
        let task = tokio::spawn(self.run_until(std::future::pending()));
        Spawned {
            address,
            state,
            task,
        }
    }
}

/// Builds the shared state on a connected pool: public migrations first, then the token key.
pub async fn prepare_state(config: Config, db: db::Pool) -> anyhow::Result<SharedState> {
    migrate::migrate_public(&db, migrate::PublicMigration::Up).await?;
    let metrics = Metrics::default();
    let mut db = db;
    let statements = metrics.clone();
    db.set_metric_callback(move |_| {
        statements.count_statement();
        crate::db::statements::record();
    });
    let jwt_secret = match &config.jwt_secret {
        Some(secret) => secret.clone(),
        None => load_or_create_jwt_secret(&config.data_dir)?,
    };
    let feed = AccessFeed::new();
    let webhooks =
        webhooks::sender::Sender::new(&config).context("could not set up the webhook client")?;
    Ok(Arc::new(AppState {
        jwt: JwtKeys::new(&jwt_secret, config.jwt_ttl),
        passwords: PasswordHasherPool::new(config.password_hash_queue, metrics.clone()),
        rate_limits: RateLimits::new(&config),
        db_shares: DbShares::new(&config),
        servers: DbServers::new(&config, db.clone()),
        config,
        metrics,
        directory: TenantDirectory::new(feed.clone()),
        access: Access::new(feed),
        login_throttle: Default::default(),
        activity: Default::default(),
        events: EventHub::new(db.clone()),
        batches: Default::default(),
        webhooks,
        db,
    }))
}

/// Removes tenants that stopped servers left half-provisioned outside any batch, and sessions
/// that can never be used again.
async fn housekeeping(state: &SharedState) -> anyhow::Result<()> {
    let tenants = batch::recovery::recover_stalled_tenants(state).await?;
    if tenants > 0 {
        tracing::warn!(
            tenants,
            "removed tenants left half-provisioned by a stopped server"
        );
    }
    let sessions = sessions::prune_ended(state).await?;
    if sessions > 0 {
        tracing::info!(sessions, "deleted ended sessions");
    }
    Ok(())
}

/// Makes sure a platform operator exists (see [`operators::bootstrap`]).
async fn bootstrap_operator(state: &AppState) -> anyhow::Result<()> {
    let configured = state
        .config
        .bootstrap_admin
        .as_ref()
        .map(|admin| (admin.email.clone(), admin.password.clone()));
    match operators::bootstrap(&state.db, &state.passwords, configured)
        .await
        .context("creating the first platform operator failed")?
    {
        operators::Bootstrap::AlreadyPresent => {}
        operators::Bootstrap::Configured { email } => {
            tracing::info!(%email, "created the platform operator from BOOTSTRAP_ADMIN_EMAIL");
        }
        operators::Bootstrap::Generated { email, password } => {
            // Shown once, on the console only: it is not stored anywhere in clear.
            println!(
                "\n  First platform operator created.\n  email:    {email}\n  password: {password}\n  Change it, or create your own with `tenantgraph admin create`.\n"
            );
        }
    }
    Ok(())
}

/// Reads the token signing secret kept in the data directory, creating it on first use.
fn load_or_create_jwt_secret(data_dir: &Path) -> anyhow::Result<SecretString> {
    use std::{fs::OpenOptions, io::Write, os::unix::fs::OpenOptionsExt};

    let path = data_dir.join("jwt_secret");
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("could not create {}", data_dir.display()))?;
    match std::fs::read_to_string(&path) {
        Ok(secret) if secret.trim().len() >= 32 => {
            tracing::warn!(path = %path.display(), "JWT_SECRET is not set; using the secret kept in the data directory");
            return Ok(secret.trim().to_owned().into());
        }
        Ok(_) => anyhow::bail!(
            "{} is too short; delete it or set JWT_SECRET",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("could not read {}", path.display())),
    }
    // Written aside and linked into place: a second server starting at the same moment either
    // wins the link or reads the winner's complete file, never a half-written one.
    let secret = crate::auth::random_token(64);
    let staged = data_dir.join(format!("jwt_secret.{}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staged)
        .with_context(|| format!("could not create {}", staged.display()))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&staged, &path);
    std::fs::remove_file(&staged).ok();
    match linked {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "JWT_SECRET is not set; generated one and kept it in the data directory");
            Ok(secret.into())
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create_jwt_secret(data_dir)
        }
        Err(err) => Err(err).with_context(|| format!("could not create {}", path.display())),
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

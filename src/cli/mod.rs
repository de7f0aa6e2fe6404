//! The `tenantgraph` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

mod batch_cli;
mod server_cli;
mod tenant_cli;

use crate::{
    auth::{operators, password::PasswordHasherPool},
    config::Config,
    db::{self, migrate},
    graphql, startup, telemetry,
};

#[derive(Parser, Debug)]
#[command(
    name = "tenantgraph",
    version,
    about = "GraphQL API server for schema-per-tenant SaaS back-ends"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply, roll back or inspect migrations.
    Migrate {
        #[command(subcommand)]
        target: MigrateTarget,
    },
    /// Inspect the tenant registry; back up and restore tenants.
    Tenants {
        #[command(subcommand)]
        action: TenantsAction,
    },
    /// The PostgreSQL servers tenants are placed on (the control database is `control`).
    Servers {
        #[command(subcommand)]
        action: ServersAction,
    },
    /// Manage platform operators.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// The GraphQL schema.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateTarget {
    /// The registry in the `public` schema.
    Public {
        #[command(subcommand)]
        action: PublicAction,
    },
    /// One tenant's schema.
    Tenant {
        /// The tenant's schema name.
        #[arg(long)]
        schema: String,
        #[command(subcommand)]
        action: TenantSchemaAction,
    },
    /// Every tenant's schema.
    Tenants {
        #[command(subcommand)]
        action: FleetAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum TenantsAction {
    /// List live tenants with their status and revision.
    List,
    /// Provision every tenant of a batch file (a JSON list of tenants with tenant_name,
    /// domain, email, schema_name, description, settings), with a progress bar.
    Provision {
        #[arg(long)]
        file: std::path::PathBuf,
        /// Contact email for tenants of the file that have none.
        #[arg(long)]
        contact_email: Option<String>,
    },
    /// Report what disagrees between the registry and the database: schemas no tenant owns,
    /// tenants whose schema is missing, tenants stuck mid-provisioning. Exits non-zero when
    /// anything does.
    Reconcile,
    /// Write one tenant's schema (pg_dump) with its registry record and revision to one file.
    Backup {
        /// The tenant's domain (or its id, or its schema name).
        #[arg(long)]
        tenant: String,
        /// The backup file to write (replaced only once complete).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore a backup file as the tenant it was (refused while a tenant has its id, domain or
    /// schema), or with --as as a new tenant; either way with a new API key, printed once.
    Restore {
        /// A file written by `tenants backup`; checked whole before anything changes.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Restore as a new tenant with this domain: a new id, and the schema name of the domain.
        #[arg(long = "as", value_name = "NEW_DOMAIN")]
        as_domain: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum ServersAction {
    /// Every server with its state, capacity and live tenants.
    List,
    /// Add a server after connecting to it; new tenants may be placed there at once.
    Add {
        /// 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter.
        #[arg(long)]
        name: String,
        /// postgres://user:password@host:port/database. Also read from
        /// TENANTGRAPH_SERVER_URL, which keeps the password out of the shell history.
        #[arg(long, env = "TENANTGRAPH_SERVER_URL", hide_env_values = true)]
        url: String,
        /// Most live tenants placement puts there; default: no limit.
        #[arg(long)]
        capacity: Option<i32>,
    },
    /// Stop placing new tenants on a server; its tenants stay and are served.
    Drain {
        #[arg(long)]
        name: String,
    },
}

// Not `Debug`: `Add` holds a URL with a password.
impl std::fmt::Debug for ServersAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServersAction::List => "List",
            ServersAction::Add { .. } => "Add",
            ServersAction::Drain { .. } => "Drain",
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum TenantSchemaAction {
    /// Migrate up, to head or to `--to`.
    Up {
        #[arg(long)]
        to: Option<String>,
    },
    /// Roll back the newest migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: usize,
    },
    /// Applied and pending migrations.
    Status,
    /// Applied migrations with when each was applied.
    History,
}

#[derive(Subcommand, Debug)]
pub enum FleetAction {
    /// Migrate every tenant behind the target (head, or `--to`).
    Up {
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PublicAction {
    /// Apply every pending public migration.
    Up,
    /// Roll back the newest public migrations.
    Down {
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List public migrations and whether each is applied.
    Status,
}

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// Create a platform operator.
    Create {
        #[arg(long)]
        email: String,
        /// Also read from TENANTGRAPH_ADMIN_PASSWORD, which keeps it out of the shell history.
        #[arg(long, env = "TENANTGRAPH_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchemaAction {
    /// Print the GraphQL SDL (the content of schema.graphql).
    Export,
}

/// Runs the command for a server of `roots`; the error, if any, is for `main` to print.
pub async fn run(cli: Cli, roots: graphql::Roots) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Schema {
        action: SchemaAction::Export,
    } = command
    {
        print!("{}", roots.sdl());
        return Ok(());
    }

    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match command {
        Command::Serve => {
            let app = startup::Application::build_serving(config, roots).await?;
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Migrate {
            target: MigrateTarget::Public { action },
        } => {
            with_database(
                &config,
                |db, _| async move { migrate_public(&db, action).await },
            )
            .await
        }
        Command::Migrate {
            target: MigrateTarget::Tenant { schema, action },
        } => {
            with_state(config, |state| async move {
                tenant_cli::migrate_one(&state, &schema, action).await
            })
            .await
        }
        Command::Migrate {
            target:
                MigrateTarget::Tenants {
                    action: FleetAction::Up { to },
                },
        } => {
            with_state(config, |state| async move {
                batch_cli::migrate_all(&state, tenant_cli::parse_target(to.as_deref())?).await
            })
            .await
        }
        Command::Tenants {
            action: action @ (TenantsAction::Backup { .. } | TenantsAction::Restore { .. }),
        } => {
            let pg_bin = config.pg_bin.clone();
            with_state_at(config, |state, url| async move {
                let url = url.context("no database URL for pg_dump and pg_restore")?;
                let tools = db::tools::PgTools::find(pg_bin.as_deref(), &url).await?;
                tenant_cli::backup_or_restore(&state, &tools, action).await
            })
            .await
        }
        Command::Tenants { action } => {
            with_state(config, |state| async move {
                match action {
                    TenantsAction::List => tenant_cli::list(&state).await,
                    TenantsAction::Provision {
                        file,
                        contact_email,
                    } => batch_cli::provision_file(&state, &file, contact_email.as_deref()).await,
                    TenantsAction::Reconcile => tenant_cli::reconcile(&state).await,
                    TenantsAction::Backup { .. } | TenantsAction::Restore { .. } => {
                        unreachable!("handled above")
                    }
                }
            })
            .await
        }
        Command::Servers { action } => {
            with_state(config, |state| async move {
                server_cli::run(&state, action).await
            })
            .await
        }
        Command::Admin {
            action:
                AdminAction::Create {
                    email,
                    password,
                    name,
                },
        } => {
            with_database(&config, |db, _| async move {
                migrate::migrate_public(&db, migrate::PublicMigration::Up).await?;
                let operator = operators::create(
                    &db,
                    &PasswordHasherPool::default(),
                    &email,
                    SecretString::from(password),
                    name,
                )
                .await
                .context("could not create the operator")?;
                println!(
                    "created platform operator {} ({})",
                    operator.email, operator.id
                );
                Ok(())
            })
            .await
        }
        Command::Schema { .. } => unreachable!("handled before the configuration is read"),
    }
}

async fn migrate_public(db: &db::Pool, action: PublicAction) -> anyhow::Result<()> {
    match action {
        PublicAction::Up => migrate::migrate_public(db, migrate::PublicMigration::Up).await?,
        PublicAction::Down { steps } => {
            migrate::migrate_public(db, migrate::PublicMigration::Down { steps }).await?
        }
        PublicAction::Status => {}
    }
    for (name, applied) in migrate::public_status(db).await? {
        println!("{} {name}", if applied { "applied" } else { "pending" });
    }
    Ok(())
}

/// Runs `work` on the application state (public schema migrated).
async fn with_state<F, Fut>(config: Config, work: F) -> anyhow::Result<()>
where
    F: FnOnce(crate::state::SharedState) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    with_state_at(config, |state, _| work(state)).await
}

/// [`with_state`], also handing over the session URL PostgreSQL's client programs use.
async fn with_state_at<F, Fut>(config: Config, work: F) -> anyhow::Result<()>
where
    F: FnOnce(crate::state::SharedState, Option<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config_for_db = config.clone();
    with_database(&config_for_db, |db, url| async move {
        let state = startup::prepare_state(config, db).await?;
        work(state, url).await
    })
    .await
}

/// Runs `work` on a pool. The embedded cluster is stopped afterwards only when no other process
/// (a running server, another command) uses it: a command never pulls the database from under a
/// live server, and a cluster it started alone does not outlive it.
async fn with_database<F, Fut>(config: &Config, work: F) -> anyhow::Result<()>
where
    F: FnOnce(db::Pool, Option<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let connected = db::connect(config).await?;
    let result = work(connected.db.clone(), connected.session_url(config)).await;
    connected.db.close().await.ok();
    if let Some(embedded) = connected.embedded {
        embedded.stop().await?;
    }
    result
}

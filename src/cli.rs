//! The `tenantgraph` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

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

/// Runs the command; the error, if any, is for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Schema {
        action: SchemaAction::Export,
    } = command
    {
        print!("{}", graphql::sdl());
        return Ok(());
    }

    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    match command {
        Command::Serve => {
            let app = startup::Application::build(config).await?;
            app.run_until(startup::shutdown_signal()).await
        }
        Command::Migrate {
            target: MigrateTarget::Public { action },
        } => {
            with_database(
                &config,
                |db| async move { migrate_public(&db, action).await },
            )
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
            with_database(&config, |db| async move {
                migrate::migrate_public(&db, migrate::PublicMigration::Up).await?;
                let operator = operators::create(
                    &db,
                    &PasswordHasherPool::default(),
                    &email,
                    SecretString::from(password),
                    name,
                )
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
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

async fn migrate_public(
    db: &sea_orm::DatabaseConnection,
    action: PublicAction,
) -> anyhow::Result<()> {
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

/// Runs `work` on a pool; an embedded cluster this command had to start is stopped afterwards.
async fn with_database<F, Fut>(config: &Config, work: F) -> anyhow::Result<()>
where
    F: FnOnce(sea_orm::DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let connected = db::connect(config).await?;
    let result = work(connected.db.clone()).await;
    connected.db.close().await.ok();
    if let Some(embedded) = connected.embedded {
        embedded.stop().await?;
    }
    result
}

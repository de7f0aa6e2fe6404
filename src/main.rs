use clap::Parser;
use tenantgraph::{
    cli::{self, Cli},
    config::ConfigError,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match cli::run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // A configuration mistake is one line; anything else shows its chain of causes.
            if let Some(config_error) = err.downcast_ref::<ConfigError>() {
                eprintln!("tenantgraph: {config_error}");
            } else {
                eprintln!("tenantgraph: {err:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

use clap::Parser;
use tenantgraph::{
    cli::{self, Cli},
    config::ConfigError,
};

/// mimalloc: its per-thread free lists make the many small allocations of a request cheap (with
/// glibc's allocator, malloc and free took a fifth of the server's time under load), and it
/// returns freed memory to the system instead of keeping it in arenas. Built without
/// transparent huge pages (`no_thp`): with them the server held some 18 MB more.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

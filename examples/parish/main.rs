//! A parish's tenant app on tenantgraph: every parish (tenant) gets its own `donations` table
//! beside the built-in people, users and roles, with a GraphQL API for it, and all of
//! tenantgraph's provisioning, fleet migrations, isolation and operations around it.
//!
//! ```text
//! cargo run --release --example parish            # serve, like `tenantgraph serve`
//! cargo run --release --example parish -- --help  # the same CLI as `tenantgraph`
//! ```

mod app;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match app::tenantgraph() {
        Ok(app) => app.main().await,
        Err(err) => {
            eprintln!("parish: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

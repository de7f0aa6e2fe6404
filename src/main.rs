#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenantgraph::app::TenantGraph::built_in().main().await
}

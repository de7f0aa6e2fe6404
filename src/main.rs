/// mimalloc: its per-thread free lists make the many small allocations of a request cheap (with
/// glibc's allocator, malloc and free took a fifth of the server's time under load), and it
/// returns freed memory to the system instead of keeping it in arenas. Built without
/// transparent huge pages (`no_thp`): with them the server held some 18 MB more.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tenantgraph::app::TenantGraph::built_in().main().await
}

#[test]
fn schema_graphql_is_in_sync_with_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql exists");
    assert!(
        committed == tenantgraph::graphql::sdl(),
        "schema.graphql is out of date: run `cargo run -- schema export > schema.graphql`"
    );
}

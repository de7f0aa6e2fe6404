//! The GraphQL contract: `schema.graphql` holds the SDL the code serves, and its insta snapshot
//! shows any change to it as a readable diff (`cargo insta review` accepts one).

#[test]
fn schema_graphql_is_in_sync_with_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql exists");
    assert!(
        committed == tenantgraph::graphql::sdl(),
        "schema.graphql is out of date: run `cargo run -- schema export > schema.graphql`"
    );
}

#[test]
fn the_sdl_matches_its_snapshot() {
    insta::assert_snapshot!("sdl", tenantgraph::graphql::sdl());
}

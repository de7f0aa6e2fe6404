//! The parish example (`examples/parish`) as its users run it: its own server, with the
//! donations it adds to tenantgraph, on a real PostgreSQL.

#[allow(dead_code)] // the harness of the api tests, which use all of it
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../support/isolation.rs"]
mod isolation_property;
#[path = "../../examples/parish/app/mod.rs"]
mod parish;

mod donations;

//! Database servers over GraphQL (platform operators only): list them with their tenant counts,
//! add one, drain one. A server's URL goes in once and is never answered.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject};

use crate::{
    audit::Actor,
    graphql::{ContextExt, all_errors},
    tenancy::servers::{self as service, ServerDraft, ServerState, ServerSummary},
};

/// Whether new tenants may be placed on a server.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::tenancy::servers::ServerState")]
pub enum DatabaseServerState {
    /// New tenants may be placed there.
    Active,
    /// Its tenants are served; no new tenant is placed there.
    Draining,
    /// Marked out of service: no new tenant is placed there.
    Down,
}

/// A PostgreSQL server tenants are placed on. `control` is the control database, which holds
/// the registry.
#[derive(SimpleObject, Debug, Clone)]
pub struct DatabaseServer {
    pub name: String,
    pub state: DatabaseServerState,
    /// Most live tenants placement puts there; null: no limit.
    pub capacity: Option<i32>,
    /// Live tenants placed there.
    pub tenant_count: i64,
    /// Whether this is the control database.
    pub control: bool,
}

impl From<ServerSummary> for DatabaseServer {
    fn from(server: ServerSummary) -> Self {
        DatabaseServer {
            name: server.name,
            state: server.state.into(),
            capacity: server.capacity,
            tenant_count: server.tenants,
            control: server.control,
        }
    }
}

#[derive(InputObject)]
pub struct AddDatabaseServerInput {
    /// 1 to 63 characters of a-z, 0-9, `_` and `-`, starting with a letter; not `control`.
    pub name: String,
    /// `postgres://user:password@host:port/database` (or `postgresql://`), at most 2,048
    /// bytes; of query parameters only `sslmode` and `application_name`. Checked by connecting
    /// before the server is added; never shown again.
    pub url: String,
    /// Most live tenants placement puts there (0 to 1,000,000); null: no limit.
    pub capacity: Option<i32>,
}

#[derive(Default)]
pub struct ServerQuery;

#[Object]
impl ServerQuery {
    /// Every database server, the control database first.
    async fn database_servers(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<DatabaseServer>> {
        ctx.request().require_platform()?;
        let servers = service::list(&ctx.state().db).await?;
        Ok(servers.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct ServerMutation;

#[Object]
impl ServerMutation {
    /// Adds a server after connecting to it; new tenants may be placed there at once.
    async fn add_database_server(
        &self,
        ctx: &Context<'_>,
        input: AddDatabaseServerInput,
    ) -> async_graphql::Result<DatabaseServer> {
        let request = ctx.request();
        request.require_platform()?;
        let draft = ServerDraft {
            name: input.name,
            url: input.url,
            capacity: input.capacity,
        };
        let added = service::add(ctx.state(), &Actor::from(request), &draft)
            .await
            .map_err(|errors| all_errors(ctx, errors))?;
        Ok(added.into())
    }

    /// Stops placing new tenants on a server; its tenants stay and are served.
    async fn drain_database_server(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<DatabaseServer> {
        let request = ctx.request();
        request.require_platform()?;
        let server = service::set_state(
            ctx.state(),
            &Actor::from(request),
            &name,
            ServerState::Draining,
        )
        .await?;
        Ok(server.into())
    }

    /// Sets a server's state: `ACTIVE` takes new tenants again, `DRAINING` and `DOWN` take none.
    async fn set_database_server_state(
        &self,
        ctx: &Context<'_>,
        name: String,
        state: DatabaseServerState,
    ) -> async_graphql::Result<DatabaseServer> {
        let request = ctx.request();
        request.require_platform()?;
        let server =
            service::set_state(ctx.state(), &Actor::from(request), &name, state.into()).await?;
        Ok(server.into())
    }
}

//! The GraphQL schema: one folder per domain, merged into the roots here, with the limits that
//! keep hostile documents cheap to refuse.

pub(crate) mod auth;
pub(crate) mod batch;
mod document_cache;
mod error_codes;
mod operation_metrics;
mod operations;
pub(crate) mod reauthorize;
pub(crate) mod servers;
pub mod tenant_data;
pub(crate) mod tenants;
pub(crate) mod webhooks;

pub(crate) use document_cache::{PERSISTED_QUERY, QueriesOnly};
pub(crate) use operations::is_request_error;

use std::sync::Arc;

use async_graphql::{
    Context, Data, EmptyMutation, EmptySubscription, Executor, MergedObject, MergedSubscription,
    ObjectType, Request, Response, Schema, SchemaBuilder, SubscriptionType, ValidationMode,
    futures_util::{future::BoxFuture, stream::BoxStream},
};

use crate::{
    auth::{Principal, RequestContext},
    error::{AppError, AppResult},
    state::SharedState,
};

// The query root: the built-in objects and the application's `Q` (see `Roots::merged`); a
// comment, not a doc comment, which would become the type's description in the SDL.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot<Q: ObjectType = NoQuery>(
    auth::AuthQuery,
    tenants::TenantQuery,
    tenants::DriftQuery,
    tenants::TemplateQuery,
    batch::BatchQuery,
    tenant_data::TenantDataQuery,
    webhooks::WebhookQuery,
    servers::ServerQuery,
    Q,
);

// The mutation root: the built-in objects and the application's `M`.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot<M: ObjectType = EmptyMutation>(
    auth::AuthMutation,
    tenants::TenantMutation,
    tenants::TemplateMutation,
    batch::BatchMutation,
    tenant_data::TenantDataMutation,
    webhooks::WebhookMutation,
    servers::ServerMutation,
    M,
);

// The subscription root: the built-in objects and the application's `S`.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot<S: SubscriptionType = NoSubscription>(batch::BatchSubscription, S);

/// The schema the transports serve, whichever roots it was built from, run with the
/// request-level steps of every operation (`operations::Operations`).
#[derive(Clone)]
pub struct AppSchema(Arc<dyn ServedSchema>);

/// What the transports ask of a schema, for any roots.
trait ServedSchema: Send + Sync + 'static {
    fn execute(&self, request: Request) -> BoxFuture<'_, Response>;
    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response>;
}

impl<Q, M, S> ServedSchema for operations::Operations<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    fn execute(&self, request: Request) -> BoxFuture<'_, Response> {
        Box::pin(Executor::execute(self, request))
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        Executor::execute_stream(self, request, session_data)
    }
}

impl AppSchema {
    pub async fn execute(&self, request: impl Into<Request>) -> Response {
        self.0.execute(request.into()).await
    }
}

impl Executor for AppSchema {
    async fn execute(&self, request: Request) -> Response {
        self.0.execute(request).await
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        self.0.execute_stream(request, session_data)
    }
}

/// The roots a server serves: the built-in ones ([`Roots::default`]), or those merged with an
/// application's query, mutation and subscription objects ([`Roots::merged`]).
#[derive(Clone, Copy)]
pub struct Roots {
    serve: fn(SharedState) -> AppSchema,
    sdl: fn() -> String,
}

impl Default for Roots {
    fn default() -> Self {
        Roots::merged::<NoQuery, EmptyMutation, NoSubscription>()
    }
}

impl Roots {
    /// The built-in roots with `Q`, `M` and `S` merged in: their fields sit beside the
    /// built-in ones. [`NoQuery`], [`EmptyMutation`] and [`NoSubscription`] stand for none.
    pub fn merged<Q, M, S>() -> Self
    where
        Q: ObjectType + Default + 'static,
        M: ObjectType + Default + 'static,
        S: SubscriptionType + Default + 'static,
    {
        fn roots<Q, M, S>() -> SchemaBuilder<QueryRoot<Q>, MutationRoot<M>, SubscriptionRoot<S>>
        where
            Q: ObjectType + Default + 'static,
            M: ObjectType + Default + 'static,
            S: SubscriptionType + Default + 'static,
        {
            builder(
                QueryRoot::default(),
                MutationRoot::default(),
                SubscriptionRoot::default(),
            )
        }
        Roots {
            serve: |state| serve(roots::<Q, M, S>, state),
            sdl: || roots::<Q, M, S>().finish().sdl(),
        }
    }

    /// The schema served to clients, on `state`.
    pub fn serve(&self, state: SharedState) -> AppSchema {
        (self.serve)(state)
    }

    /// The SDL of these roots (`tenantgraph schema export`).
    pub fn sdl(&self) -> String {
        (self.sdl)()
    }
}

/// For [`Roots::merged`]: an application without query fields of its own (an object without
/// fields, which adds none to the merged root).
pub type NoQuery = EmptyMutation;
/// For [`Roots::merged`]: an application without subscriptions of its own.
pub type NoSubscription = EmptySubscription;

/// Deepest selection accepted: the contract's documents need about six levels, the standard
/// introspection query (GraphiQL, code generators) fifteen.
pub const MAX_DEPTH: usize = 15;
/// Complexity budget: each field costs 1, and a connection costs its page size times what each
/// item selects ([`page_cost`]), so 50 aliases of `people(first: 100) { totalCount }` (5,000) are
/// refused before any database work while a full page of 50 tenants with every field fits.
pub const MAX_COMPLEXITY: usize = 4_000;
/// Operations accepted in one JSON-array batch.
pub const MAX_BATCH_OPERATIONS: usize = 10;
/// Largest page any connection hands out, whatever `first`/`last` ask for.
pub const MAX_PAGE_SIZE: i32 = 100;

/// What a connection field costs: the page it will hand out (`first`, or the field's default,
/// clamped like the resolver clamps it) times the cost of one item's selection.
pub fn page_cost(first: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let page = first.unwrap_or(default).clamp(1, MAX_PAGE_SIZE) as usize;
    page.saturating_mul(child_complexity.max(1))
}

fn builder<Q, M, S>(query: Q, mutation: M, subscription: S) -> SchemaBuilder<Q, M, S>
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    Schema::build(query, mutation, subscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .limit_directives(16)
}

/// The schema of `roots` served to clients, run by [`operations::Operations`]. It has no
/// extensions: what they would do is request-level code there, so fields resolve without an
/// extension hop each.
fn serve<Q, M, S>(roots: fn() -> SchemaBuilder<Q, M, S>, state: SharedState) -> AppSchema
where
    Q: ObjectType + 'static,
    M: ObjectType + 'static,
    S: SubscriptionType + 'static,
{
    let served = |validation| {
        let mut builder = roots().validation_mode(validation);
        if !state.config.graphql_introspection {
            builder = builder.disable_introspection().disable_suggestions();
        }
        builder.data(state.clone())
    };
    let revalidation = operations::Revalidation(served(ValidationMode::Fast).finish());
    let schema = served(ValidationMode::Strict)
        .data(document_cache::DocumentCache::default())
        .data(revalidation)
        .finish();
    AppSchema(Arc::new(operations::Operations::new(schema)))
}

/// The SDL of the built-in roots, which `schema.graphql` holds (`tenantgraph schema export`).
pub fn sdl() -> String {
    Roots::default().sdl()
}

/// Typed access to what every resolver may need.
pub(crate) trait ContextExt {
    fn state(&self) -> &SharedState;
    fn request(&self) -> &RequestContext;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> &SharedState {
        self.data_unchecked::<SharedState>()
    }

    fn request(&self) -> &RequestContext {
        static ANONYMOUS: RequestContext = RequestContext {
            principal: Principal::Anonymous,
            client_addr: None,
            user_agent: None,
        };
        self.data_opt::<RequestContext>().unwrap_or(&ANONYMOUS)
    }
}

/// Reads an `ID` argument as a UUID.
pub fn parse_id(field: &str, id: &async_graphql::ID) -> AppResult<uuid::Uuid> {
    uuid::Uuid::parse_str(id.as_str()).map_err(|_| AppError::bad_input(field, "not a valid id"))
}

/// Reports every error of a list: the first as the field's error, the others beside it.
pub(crate) fn all_errors(ctx: &Context<'_>, errors: Vec<AppError>) -> async_graphql::Error {
    use async_graphql::ErrorExtensions;
    let mut errors = errors.into_iter();
    let first = errors
        .next()
        .unwrap_or_else(|| AppError::internal(anyhow::anyhow!("an empty list of errors")));
    for other in errors {
        ctx.add_error(other.extend().into_server_error(ctx.item.pos));
    }
    first.into()
}

/// What an operation carries into execution: who asks, and from where. Tenant operations get
/// their DataLoaders when it runs (see [`AppSchema`]).
pub(crate) fn operation_data(context: RequestContext) -> async_graphql::Data {
    let mut data = async_graphql::Data::default();
    data.insert(context);
    data
}

#[cfg(test)]
mod tests {
    use async_graphql::{Object, Subscription, futures_util::Stream};

    use super::*;

    #[derive(Default)]
    struct Extra;

    #[Object]
    impl Extra {
        async fn extra_field(&self) -> i32 {
            1
        }
    }

    #[derive(Default)]
    struct Ticks;

    #[Subscription]
    impl Ticks {
        async fn ticks(&self) -> impl Stream<Item = i32> {
            async_graphql::futures_util::stream::iter([1, 2])
        }
    }

    #[test]
    fn an_applications_fields_sit_beside_the_built_in_ones_of_each_root() {
        let sdl = Roots::merged::<Extra, Extra, Ticks>().sdl();
        let root = |name: &str| {
            let start = sdl.find(&format!("type {name} {{")).unwrap();
            sdl[start..start + sdl[start..].find("\n}").unwrap()].to_owned()
        };
        for (name, built_in, added) in [
            ("Query", "tenants(", "extraField: Int!"),
            ("Mutation", "createTenant(", "extraField: Int!"),
            ("Subscription", "provisioningProgress(", "ticks: Int!"),
        ] {
            let root = root(name);
            assert!(root.contains(built_in) && root.contains(added), "{root}");
        }
        assert!(!sdl.contains("type Extra") && !sdl.contains("type Ticks"));
        assert!(!super::sdl().contains("extraField"));
    }
}

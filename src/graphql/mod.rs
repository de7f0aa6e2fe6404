//! The GraphQL schema: one folder per domain, merged into the roots here, with the limits that
//! keep hostile documents cheap to refuse.

pub mod auth;
pub mod batch;
mod document_cache;
mod error_codes;
mod operation_metrics;
mod operations;
pub mod reauthorize;
pub mod tenant_data;
pub mod tenants;
pub mod webhooks;

pub use document_cache::{PERSISTED_QUERY, QueriesOnly};
pub use operations::{Operations, is_request_error};

use async_graphql::{
    Context, MergedObject, MergedSubscription, Schema, SchemaBuilder, ValidationMode,
};

use crate::{
    auth::{Principal, RequestContext},
    error::{AppError, AppResult},
    state::SharedState,
};

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    auth::AuthQuery,
    tenants::TenantQuery,
    tenants::DriftQuery,
    tenants::TemplateQuery,
    batch::BatchQuery,
    tenant_data::TenantDataQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    auth::AuthMutation,
    tenants::TenantMutation,
    tenants::TemplateMutation,
    batch::BatchMutation,
    tenant_data::TenantDataMutation,
    webhooks::WebhookMutation,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(batch::BatchSubscription);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

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

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(32)
    .limit_directives(16)
}

/// The schema served to clients, run by [`Operations`]. It has no extensions: what they would do
/// is request-level code there, so fields resolve without an extension hop each.
pub fn build_schema(state: SharedState) -> AppSchema {
    let served = |validation| {
        let mut builder = builder().validation_mode(validation);
        if !state.config.graphql_introspection {
            builder = builder.disable_introspection().disable_suggestions();
        }
        builder.data(state.clone())
    };
    let revalidation = operations::Revalidation(served(ValidationMode::Fast).finish());
    served(ValidationMode::Strict)
        .data(document_cache::DocumentCache::default())
        .data(revalidation)
        .finish()
}

/// The SDL that `schema.graphql` holds (`tenantgraph schema export`).
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// Typed access to what every resolver may need.
pub trait ContextExt {
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
pub fn all_errors(ctx: &Context<'_>, errors: Vec<AppError>) -> async_graphql::Error {
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
/// their DataLoaders from [`Operations`].
pub fn operation_data(context: RequestContext) -> async_graphql::Data {
    let mut data = async_graphql::Data::default();
    data.insert(context);
    data
}

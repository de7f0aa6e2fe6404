//! Building an application on tenantgraph: the team's own tenant tables, migrations, GraphQL
//! objects and permissions, served by the same server, CLI and tests as the built-in ones.
//!
//! An application is assembled once, at the start of `main`, with [`TenantGraph::builder`]:
//!
//! - **tenant migrations** ([`Builder::tenant_migrations`]): a sea-orm-migration set appended
//!   after the built-in ones. Every tenant schema keeps one ledger for both; provisioning,
//!   templates, clone, fleet migrations up and down (also the one-round-trip rendered path),
//!   drift, backup and restore and health cover the application's tables as they cover the
//!   built-in ones;
//! - **permissions** ([`Builder::permissions`]): codes of the form `area:action` and the seeded
//!   roles that get them. The application's migration seeds them with [`seed_permissions`];
//!   resolvers check them with [`TenantData::require`] or [`TenantDataExt::tenant_data`];
//! - **GraphQL objects** ([`Builder::query`], [`Builder::mutation`], [`Builder::subscription`]):
//!   async-graphql objects merged into the built-in `Query`, `Mutation` and `Subscription`.
//!
//! Resolvers reach the caller's tenant only through [`TenantDataExt::tenant_data`]: it checks
//! the permission and hands out transactions pinned to the tenant's schema, each begun with a
//! check that the tenant still owns it ([`TenantData::begin`]). There is no call that hands
//! out a connection to a tenant schema without that pin. Nested look-ups are batched per
//! operation with [`TenantBatch`] and [`TenantData::load_many`].
//!
//! Migrations are static in sea-orm-migration (its `MigratorTrait` has no `self`), so
//! [`Builder::build`] registers the application's migrations and permissions for the whole
//! process, once, before anything runs: building a second, different application in the same
//! process is an error.
//!
//! ```
//! use tenantgraph::app::TenantGraph;
//!
//! // The built-in server: what the `tenantgraph` binary runs.
//! let app = TenantGraph::built_in();
//! assert!(app.sdl().contains("createTenant"));
//! ```

use std::{collections::HashMap, marker::PhantomData, sync::Arc};

use async_graphql::{
    Context, ObjectType, OutputType, SubscriptionType,
    registry::{MetaType, Registry},
};
use migration::{
    AppMigrations, PermissionSeed, register_app_migrations, sea_orm_migration::MigrationTrait,
};
use uuid::Uuid;

use crate::{
    auth::tenant::TenantContext,
    cli::Cli,
    config::{Config, ConfigError},
    error::{AppError, AppResult},
    graphql::{
        self, ContextExt, Roots,
        tenant_data::{TenantDataLoader, batch_error, loaders},
    },
    primitives::permissions::register_app_permissions,
    startup::Application,
    state::AppState,
};

pub use crate::{
    auth::tenant::Permission,
    db::pinned::TenantTransaction,
    graphql::{NoQuery, NoSubscription, tenant_data::TenantBatch},
};
pub use migration::{seed_permissions, unseed_permissions};

/// A permission an application declares: its code (`area:action`), what it allows, and the
/// seeded roles that get it ([`Builder::permissions`]). [`AppPermission::permission`] is what
/// resolvers check.
///
/// ```
/// use tenantgraph::app::{AppPermission, Permission, PermissionExt};
///
/// const DONATIONS_WRITE: AppPermission = AppPermission {
///     code: "donations:write",
///     description: "Record donations",
///     roles: &["admin", "member"],
/// };
/// assert_eq!(DONATIONS_WRITE.permission(), Permission::App("donations:write"));
/// ```
pub type AppPermission = PermissionSeed;

/// What [`AppPermission`] adds to the declaration.
pub trait PermissionExt {
    /// The permission resolvers check.
    fn permission(&self) -> Permission;
}

impl PermissionExt for AppPermission {
    fn permission(&self) -> Permission {
        Permission::App(self.code)
    }
}

/// The query, mutation and subscription types of a [`Builder`], as a marker.
type RootTypes<Q, M, S> = PhantomData<fn() -> (Q, M, S)>;

/// An assembled application: the server, the CLI and the SDL of the built-in parts with the
/// application's. Made by [`TenantGraph::builder`]; cheap to clone.
#[derive(Clone)]
pub struct TenantGraph {
    roots: Roots,
}

impl TenantGraph {
    /// The built-in server, with no application added: exactly what the `tenantgraph` binary
    /// serves.
    pub fn built_in() -> TenantGraph {
        TenantGraph {
            roots: Roots::default(),
        }
    }

    /// Starts assembling an application; without any addition it is the built-in server.
    pub fn builder() -> Builder {
        Builder {
            migrations: AppMigrations::NONE,
            permissions: &[],
            roots: PhantomData,
        }
    }

    /// The GraphQL SDL this application serves (what `schema export` prints).
    pub fn sdl(&self) -> String {
        self.roots.sdl()
    }

    /// The server, bound and ready to run (see [`Application::build`]).
    ///
    /// ```no_run
    /// # async fn start() -> anyhow::Result<()> {
    /// use tenantgraph::{app::TenantGraph, config::Config};
    ///
    /// let app = TenantGraph::builder().build()?;
    /// let server = app.application(Config::from_env()?).await?;
    /// println!("listening on {}", server.address());
    /// server.run_until(tenantgraph::startup::shutdown_signal()).await
    /// # }
    /// ```
    pub async fn application(&self, config: Config) -> anyhow::Result<Application> {
        Application::build_serving(config, self.roots).await
    }

    /// Runs one command of the `tenantgraph` CLI (`serve`, `migrate`, `tenants`, ...) for this
    /// application.
    pub async fn run(&self, cli: Cli) -> anyhow::Result<()> {
        crate::cli::run(cli, self.roots).await
    }

    /// The whole of `main`: parses the command line, runs the command and prints what failed.
    ///
    /// ```no_run
    /// use tenantgraph::app::TenantGraph;
    ///
    /// #[tokio::main]
    /// async fn main() -> std::process::ExitCode {
    ///     TenantGraph::builder().build().expect("a valid application").main().await
    /// }
    /// ```
    pub async fn main(&self) -> std::process::ExitCode {
        use clap::Parser;
        match self.run(Cli::parse()).await {
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
}

/// Assembles a [`TenantGraph`]: `Q`, `M` and `S` are the application's query, mutation and
/// subscription objects ([`NoQuery`], [`async_graphql::EmptyMutation`] and [`NoSubscription`]
/// for none).
///
/// ```
/// use tenantgraph::app::{AppPermission, TenantGraph};
/// use tenantgraph::async_graphql::{self, Object};
///
/// #[derive(Default)]
/// struct ParishQuery;
///
/// #[Object]
/// impl ParishQuery {
///     async fn parish_motto(&self) -> &str {
///         "ora et labora"
///     }
/// }
///
/// const PERMISSIONS: &[AppPermission] = &[AppPermission {
///     code: "motto:read",
///     description: "Read the motto",
///     roles: &["admin", "member", "viewer"],
/// }];
///
/// let app = TenantGraph::builder()
///     .permissions(PERMISSIONS)
///     .query::<ParishQuery>()
///     .build()
///     .unwrap();
/// assert!(app.sdl().contains("parishMotto: String!"));
/// ```
pub struct Builder<Q = NoQuery, M = async_graphql::EmptyMutation, S = NoSubscription> {
    migrations: AppMigrations,
    permissions: &'static [AppPermission],
    roots: RootTypes<Q, M, S>,
}

impl<Q, M, S> Builder<Q, M, S>
where
    Q: ObjectType + Default + 'static,
    M: ObjectType + Default + 'static,
    S: SubscriptionType + Default + 'static,
{
    /// The application's tenant migrations (oldest first), applied after the built-in ones,
    /// and the tables they create (health checks that a schema at head has them).
    pub fn tenant_migrations(
        mut self,
        migrations: fn() -> Vec<Box<dyn MigrationTrait>>,
        tables: &'static [&'static str],
    ) -> Self {
        self.migrations = AppMigrations { migrations, tables };
        self
    }

    /// The application's permissions and the seeded roles that get them. Its migrations seed
    /// them ([`seed_permissions`]); declared here, API-key scopes and template roles accept
    /// their codes and [`TenantData::require`] checks them.
    pub fn permissions(mut self, permissions: &'static [AppPermission]) -> Self {
        self.permissions = permissions;
        self
    }

    /// Query fields of the application, merged into the built-in `Query`.
    pub fn query<Q2: ObjectType + Default + 'static>(self) -> Builder<Q2, M, S> {
        self.roots()
    }

    /// Mutations of the application, merged into the built-in `Mutation`.
    pub fn mutation<M2: ObjectType + Default + 'static>(self) -> Builder<Q, M2, S> {
        self.roots()
    }

    /// Subscriptions of the application, merged into the built-in `Subscription`.
    pub fn subscription<S2: SubscriptionType + Default + 'static>(self) -> Builder<Q, M, S2> {
        self.roots()
    }

    fn roots<Q2, M2, S2>(self) -> Builder<Q2, M2, S2> {
        Builder {
            migrations: self.migrations,
            permissions: self.permissions,
            roots: PhantomData,
        }
    }

    /// Registers the migrations and permissions for this process and assembles the
    /// application. Fails when a migration name, table or permission code is taken or
    /// malformed, when a GraphQL field of the application has the name of a built-in one,
    /// or when this process already registered a different application.
    pub fn build(self) -> anyhow::Result<TenantGraph> {
        for (root, built_in, added) in [
            ("Query", fields::<graphql::QueryRoot>(), fields::<Q>()),
            ("Mutation", fields::<graphql::MutationRoot>(), fields::<M>()),
            (
                "Subscription",
                subscription_fields::<graphql::SubscriptionRoot>(),
                subscription_fields::<S>(),
            ),
        ] {
            if let Some(taken) = added.iter().find(|field| built_in.contains(field)) {
                anyhow::bail!(
                    "{root}.{taken} is a built-in field; give the application's another name"
                );
            }
        }
        register_app_permissions(self.permissions).map_err(anyhow::Error::msg)?;
        register_app_migrations(self.migrations)?;
        Ok(TenantGraph {
            roots: Roots::merged::<Q, M, S>(),
        })
    }
}

/// The field names of an object type.
fn fields<T: OutputType>() -> Vec<String> {
    match Registry::default().create_fake_output_type::<T>() {
        MetaType::Object { fields, .. } => fields.into_keys().collect(),
        _ => Vec::new(),
    }
}

/// The field names of a subscription type.
fn subscription_fields<T: SubscriptionType>() -> Vec<String> {
    match Registry::default().create_fake_subscription_type::<T>() {
        MetaType::Object { fields, .. } => fields.into_keys().collect(),
        _ => Vec::new(),
    }
}

/// The caller's tenant, as an application's resolver reaches it: the one door to its data.
pub struct TenantData<'a> {
    state: &'a AppState,
    tenant: &'a TenantContext,
    ctx: &'a Context<'a>,
}

/// How a resolver gets [`TenantData`].
pub trait TenantDataExt {
    /// The caller's tenant, when the caller acts in one (a tenant user's token or the tenant's
    /// API key) and holds `permission`: else `UNAUTHENTICATED` (anonymous) or `FORBIDDEN`.
    ///
    /// ```
    /// use tenantgraph::app::{AppPermission, PermissionExt, TenantData, TenantDataExt};
    /// use tenantgraph::async_graphql::{self, Context, Object};
    /// use tenantgraph::error::AppResult;
    /// use tenantgraph::sea_orm::{ConnectionTrait, Statement};
    ///
    /// const DONATIONS_READ: AppPermission = AppPermission {
    ///     code: "donations:read",
    ///     description: "List donations",
    ///     roles: &["admin", "member", "viewer"],
    /// };
    ///
    /// #[derive(Default)]
    /// struct DonationQuery;
    ///
    /// #[Object]
    /// impl DonationQuery {
    ///     /// How many donations the tenant recorded.
    ///     async fn donation_count(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
    ///         let tenant = ctx.tenant_data(DONATIONS_READ.permission())?;
    ///         Ok(count(&tenant).await?)
    ///     }
    /// }
    ///
    /// // Database errors become `AppError`s (`INTERNAL`, without the SQL, or `CONFLICT`) with
    /// // `?` in functions that return `AppResult`; GraphQL errors do not take them directly.
    /// async fn count(tenant: &TenantData<'_>) -> AppResult<i64> {
    ///     let txn = tenant.begin().await?;
    ///     let row = txn
    ///         .query_one_raw(Statement::from_string(
    ///             txn.get_database_backend(),
    ///             "SELECT count(*) FROM donations",
    ///         ))
    ///         .await?
    ///         .expect("count returns a row");
    ///     Ok(row.try_get_by_index(0)?)
    /// }
    /// ```
    fn tenant_data(&self, permission: Permission) -> AppResult<TenantData<'_>>;
}

impl TenantDataExt for Context<'_> {
    fn tenant_data(&self, permission: Permission) -> AppResult<TenantData<'_>> {
        let tenant = self.request().require_tenant(permission)?;
        Ok(TenantData {
            state: self.state(),
            tenant,
            ctx: self,
        })
    }
}

impl TenantData<'_> {
    /// A transaction pinned to the tenant's schema, begun with a check that the tenant is still
    /// active and owns it (`UNAUTHENTICATED` when not). Unqualified table names resolve in the
    /// tenant's schema only. Commit it to keep changes; dropped, it rolls back.
    pub async fn begin(&self) -> AppResult<TenantTransaction> {
        self.tenant.begin(self.state).await
    }

    /// Fails with `FORBIDDEN` unless the caller also holds `permission`.
    pub fn require(&self, permission: Permission) -> AppResult<()> {
        self.tenant.require(permission)
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant.tenant.id
    }

    /// The acting user; `None` when the tenant's API key acts.
    pub fn user_id(&self) -> Option<Uuid> {
        self.tenant.user_id()
    }

    /// Loads `key` with this operation's DataLoader of `B`: look-ups of the operation go to
    /// the database in batches, each in a pinned transaction of the tenant, and are cached
    /// until the operation ends.
    pub async fn load_one<B: TenantBatch>(
        &self,
        key: B::Key,
    ) -> async_graphql::Result<Option<B::Value>> {
        self.loader::<B>()?.load_one(key).await.map_err(batch_error)
    }

    /// Loads `keys` in one batch (see [`TenantData::load_one`]): hand a whole page's keys at
    /// once, and the page's nested fields find them cached.
    pub async fn load_many<B: TenantBatch>(
        &self,
        keys: impl IntoIterator<Item = B::Key>,
    ) -> async_graphql::Result<HashMap<B::Key, B::Value>> {
        self.loader::<B>()?
            .load_many(keys)
            .await
            .map_err(batch_error)
    }

    fn loader<B: TenantBatch>(&self) -> AppResult<Arc<TenantDataLoader<B>>> {
        let loaders = loaders(self.ctx).map_err(|_| {
            AppError::forbidden("tenant data needs a tenant user's token or the tenant's API key")
        })?;
        Ok(loaders.batched::<B>())
    }
}

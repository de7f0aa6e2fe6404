//! The caller's tenant over GraphQL: users, people, roles, settings. Every resolver first asks
//! the request for its tenant with the permission it needs; nested look-ups (a user's roles, a
//! person's creator) are batched per request with DataLoaders.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    ComplexObject, Context, ID, InputObject, Object, SimpleObject,
    connection::{Connection, CursorType, Edge, OpaqueCursor},
    dataloader::{DataLoader, Loader},
};
use chrono::{DateTime, FixedOffset, NaiveDate};
use entity::tenant::{person, tenant_settings};
use secrecy::SecretString;
use uuid::Uuid;

use crate::{
    auth::tenant::{Permission, TenantContext},
    error::AppError,
    graphql::{ContextExt, MAX_PAGE_SIZE, parse_id, tenants::TenantSettingsInput},
    state::SharedState,
    tenancy::validation::SettingsDraft,
    tenant_api::{people, settings, users},
};

/// Per-request batching of nested look-ups, bound to the request's tenant.
pub struct TenantLoaders {
    users: DataLoader<UsersLoader>,
    roles: DataLoader<RolesLoader>,
}

impl TenantLoaders {
    pub fn new(state: SharedState, tenant: TenantContext) -> Self {
        let shared = Arc::new((state, tenant));
        TenantLoaders {
            users: DataLoader::new(UsersLoader(shared.clone()), tokio::spawn),
            roles: DataLoader::new(RolesLoader(shared), tokio::spawn),
        }
    }
}

pub struct UsersLoader(Arc<(SharedState, TenantContext)>);
pub struct RolesLoader(Arc<(SharedState, TenantContext)>);

impl Loader<Uuid> for UsersLoader {
    type Value = users::User;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, users::User>, Self::Error> {
        let (state, tenant) = &*self.0;
        Ok(users::by_ids(state, tenant, keys)
            .await?
            .into_iter()
            .map(|user| (user.model.id, user))
            .collect())
    }
}

impl Loader<Uuid> for RolesLoader {
    type Value = Vec<String>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<String>>, Self::Error> {
        let (state, tenant) = &*self.0;
        Ok(users::roles_of(state, tenant, keys).await?)
    }
}

fn loaders<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a TenantLoaders> {
    ctx.data_opt::<TenantLoaders>().ok_or_else(|| {
        AppError::forbidden("tenant data needs a tenant user's token or the tenant's API key")
            .into()
    })
}

fn shared_error(err: Arc<AppError>) -> async_graphql::Error {
    match Arc::try_unwrap(err) {
        Ok(err) => err.into(),
        Err(shared) => AppError::internal(anyhow::anyhow!("{shared}")).into(),
    }
}

/// A user of the tenant.
pub struct User(users::User);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.model.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.model.email
    }
    async fn name(&self) -> Option<&str> {
        self.0.model.name.as_deref()
    }
    /// active, inactive, suspended or pending.
    async fn status(&self) -> &str {
        &self.0.status
    }
    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        Ok(loaders(ctx)?
            .roles
            .load_one(self.0.model.id)
            .await
            .map_err(shared_error)?
            .unwrap_or_default())
    }
    async fn created_at(&self) -> DateTime<FixedOffset> {
        self.0.model.created_at
    }
    async fn last_login_at(&self) -> Option<DateTime<FixedOffset>> {
        self.0.model.last_login_at
    }
}

/// A person the tenant keeps (a member, a contact).
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Person {
    pub id: ID,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub membership_status: String,
    pub notes: Option<String>,
    pub external_ref: Option<String>,
    pub created_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
    #[graphql(skip)]
    pub created_by: Option<Uuid>,
}

impl From<person::Model> for Person {
    fn from(model: person::Model) -> Self {
        Person {
            id: ID(model.id.to_string()),
            first_name: model.first_name,
            last_name: model.last_name,
            email: model.email,
            phone: model.phone,
            address: model.address,
            birth_date: model.birth_date,
            membership_status: model.membership_status,
            notes: model.notes,
            external_ref: model.external_ref,
            created_at: model.created_at,
            updated_at: model.updated_at,
            created_by: model.created_by,
        }
    }
}

#[ComplexObject]
impl Person {
    /// The user who recorded this person (null for API keys and deleted users).
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(id) = self.created_by else {
            return Ok(None);
        };
        Ok(loaders(ctx)?
            .users
            .load_one(id)
            .await
            .map_err(shared_error)?
            .map(User))
    }
}

#[derive(SimpleObject)]
pub struct Role {
    pub id: ID,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

#[derive(SimpleObject)]
pub struct TenantLimitsView {
    pub users: Option<i32>,
    pub storage_gb: Option<i32>,
}

/// The tenant's own configuration.
#[derive(SimpleObject)]
pub struct TenantSettingsView {
    pub display_name: String,
    pub features: Vec<String>,
    pub limits: TenantLimitsView,
    pub timezone: String,
    pub locale: String,
    pub updated_at: DateTime<FixedOffset>,
}

impl From<tenant_settings::Model> for TenantSettingsView {
    fn from(model: tenant_settings::Model) -> Self {
        let parsed = SettingsDraft::from_json(&serde_json::json!({
            "features": model.features,
            "limits": model.limits,
        }));
        let limits = parsed.limits.unwrap_or_default();
        TenantSettingsView {
            display_name: model.display_name,
            features: parsed.features.unwrap_or_default(),
            limits: TenantLimitsView {
                users: limits.users,
                storage_gb: limits.storage_gb,
            },
            timezone: model.timezone,
            locale: model.locale,
            updated_at: model.updated_at,
        }
    }
}

#[derive(SimpleObject, Default)]
pub struct PeopleCount {
    /// People matching the search, across all pages.
    pub total_count: u64,
}

pub type PersonConnection = Connection<OpaqueCursor<people::PersonCursor>, Person, PeopleCount>;

#[derive(InputObject)]
pub struct PersonInput {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub membership_status: Option<String>,
    pub notes: Option<String>,
}

#[derive(InputObject)]
pub struct CreatePersonInput {
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub membership_status: Option<String>,
    pub notes: Option<String>,
}

impl From<CreatePersonInput> for people::PersonFields {
    fn from(input: CreatePersonInput) -> Self {
        people::PersonFields {
            first_name: Some(input.first_name),
            last_name: Some(input.last_name),
            email: input.email,
            phone: input.phone,
            address: input.address,
            birth_date: input.birth_date,
            membership_status: input.membership_status,
            notes: input.notes,
        }
    }
}

impl From<PersonInput> for people::PersonFields {
    fn from(input: PersonInput) -> Self {
        people::PersonFields {
            first_name: input.first_name,
            last_name: input.last_name,
            email: input.email,
            phone: input.phone,
            address: input.address,
            birth_date: input.birth_date,
            membership_status: input.membership_status,
            notes: input.notes,
        }
    }
}

#[derive(InputObject)]
pub struct CreateUserInput {
    pub email: String,
    #[graphql(secret)]
    pub password: Option<String>,
    pub name: Option<String>,
    #[graphql(default_with = "vec![\"member\".to_owned()]")]
    pub roles: Vec<String>,
    /// active (default), inactive, suspended or pending.
    pub status: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateUserInput {
    pub name: Option<String>,
    pub status: Option<String>,
    #[graphql(secret)]
    pub password: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateTenantSettingsInput {
    pub display_name: Option<String>,
    pub features: Option<Vec<String>>,
    pub limits: Option<crate::graphql::tenants::TenantLimitsInput>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
}

#[derive(Default)]
pub struct TenantDataQuery;

#[Object]
impl TenantDataQuery {
    async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        let tenant = ctx.request().require_tenant(Permission::UsersRead)?;
        Ok(users::list(ctx.state(), tenant)
            .await?
            .into_iter()
            .map(User)
            .collect())
    }

    async fn user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<User>> {
        ctx.request().require_tenant(Permission::UsersRead)?;
        let id = parse_id("id", &id)?;
        Ok(loaders(ctx)?
            .users
            .load_one(id)
            .await
            .map_err(shared_error)?
            .map(User))
    }

    /// People of the tenant, oldest first; `search` matches names and email.
    async fn people(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> async_graphql::Result<PersonConnection> {
        let tenant = ctx.request().require_tenant(Permission::PeopleRead)?;
        if search.as_ref().is_some_and(|s| s.len() > 200) {
            return Err(AppError::bad_input("search", "search must be at most 200 bytes").into());
        }
        let after = after
            .map(|cursor| {
                OpaqueCursor::<people::PersonCursor>::decode_cursor(&cursor)
                    .map_err(|_| AppError::bad_input("after", "not a cursor of this connection"))
            })
            .transpose()?;
        let limit = first.unwrap_or(20).clamp(1, MAX_PAGE_SIZE) as u64;
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = people::page(
            ctx.state(),
            tenant,
            search.as_deref(),
            after.as_deref(),
            limit,
            with_total,
        )
        .await?;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            page.has_next_page,
            PeopleCount {
                total_count: page.total_count.unwrap_or_default(),
            },
        );
        connection
            .edges
            .extend(page.people.into_iter().map(|person| {
                let cursor = OpaqueCursor(people::PersonCursor {
                    created_at: person.created_at,
                    id: person.id,
                });
                Edge::new(cursor, Person::from(person))
            }));
        Ok(connection)
    }

    async fn person(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Person>> {
        let tenant = ctx.request().require_tenant(Permission::PeopleRead)?;
        let id = parse_id("id", &id)?;
        Ok(people::find(ctx.state(), tenant, id)
            .await?
            .map(Person::from))
    }

    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Role>> {
        let tenant = ctx.request().require_tenant(Permission::RolesRead)?;
        Ok(settings::roles(ctx.state(), tenant)
            .await?
            .into_iter()
            .map(|entry| Role {
                id: ID(entry.role.id.to_string()),
                name: entry.role.name,
                description: entry.role.description,
                permissions: entry.permissions,
            })
            .collect())
    }

    async fn tenant_settings(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<TenantSettingsView> {
        let tenant = ctx.request().require_tenant(Permission::SettingsRead)?;
        Ok(settings::get(ctx.state(), tenant).await?.into())
    }
}

#[derive(Default)]
pub struct TenantDataMutation;

#[Object]
impl TenantDataMutation {
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> async_graphql::Result<User> {
        let tenant = ctx.request().require_tenant(Permission::UsersWrite)?;
        let new = users::NewUser {
            email: input.email,
            password: input.password.map(SecretString::from),
            name: input.name,
            roles: input.roles,
            status: input.status,
        };
        Ok(User(users::create(ctx.state(), tenant, new).await?))
    }

    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateUserInput,
    ) -> async_graphql::Result<User> {
        let tenant = ctx.request().require_tenant(Permission::UsersWrite)?;
        let id = parse_id("id", &id)?;
        let changes = users::UserChanges {
            name: input.name,
            status: input.status,
            password: input.password.map(SecretString::from),
        };
        Ok(User(users::update(ctx.state(), tenant, id, changes).await?))
    }

    /// Gives the user a role (again is fine).
    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: String,
    ) -> async_graphql::Result<User> {
        let tenant = ctx.request().require_tenant(Permission::UsersWrite)?;
        let id = parse_id("userId", &user_id)?;
        Ok(User(
            users::assign_role(ctx.state(), tenant, id, &role).await?,
        ))
    }

    async fn create_person(
        &self,
        ctx: &Context<'_>,
        input: CreatePersonInput,
    ) -> async_graphql::Result<Person> {
        let tenant = ctx.request().require_tenant(Permission::PeopleWrite)?;
        Ok(people::create(ctx.state(), tenant, input.into())
            .await?
            .into())
    }

    async fn update_person(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: PersonInput,
    ) -> async_graphql::Result<Person> {
        let tenant = ctx.request().require_tenant(Permission::PeopleWrite)?;
        let id = parse_id("id", &id)?;
        Ok(people::update(ctx.state(), tenant, id, input.into())
            .await?
            .into())
    }

    async fn delete_person(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let tenant = ctx.request().require_tenant(Permission::PeopleWrite)?;
        let id = parse_id("id", &id)?;
        people::delete(ctx.state(), tenant, id).await?;
        Ok(true)
    }

    async fn update_tenant_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantSettingsInput,
    ) -> async_graphql::Result<TenantSettingsView> {
        let tenant = ctx.request().require_tenant(Permission::SettingsWrite)?;
        let settings_given = input.features.is_some() || input.limits.is_some();
        let current = settings::get(ctx.state(), tenant).await?;
        // Absent parts of the settings keep their current value.
        let draft = settings_given.then(|| {
            SettingsDraft::from(TenantSettingsInput {
                features: input.features,
                limits: input.limits,
            })
            .merged_over(SettingsDraft::from_json(&serde_json::json!({
                "features": current.features,
                "limits": current.limits,
            })))
        });
        let changes = settings::SettingsChanges {
            display_name: input.display_name,
            settings: draft,
            timezone: input.timezone,
            locale: input.locale,
        };
        Ok(settings::update(ctx.state(), tenant, changes).await?.into())
    }
}

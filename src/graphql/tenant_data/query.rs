use async_graphql::{
    Context, ID, Object,
    connection::{Connection, CursorType, Edge, OpaqueCursor},
};

use crate::{
    auth::tenant::Permission,
    error::AppError,
    graphql::{ContextExt, MAX_PAGE_SIZE, parse_id},
    tenant_data::{people, roles, settings, users},
};

use super::{
    loaders::{batch_error, loaders},
    types::{PeopleCount, Person, PersonConnection, Role, TenantSettingsView, User},
};

/// Longest `search` accepted.
const MAX_SEARCH_BYTES: usize = 200;

#[derive(Default)]
pub struct TenantDataQuery;

#[Object]
impl TenantDataQuery {
    /// The tenant's users, oldest first (`users:read`).
    async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        let tenant = ctx.request().require_tenant(Permission::UsersRead)?;
        let users = users::list(ctx.state(), tenant).await?;
        if ctx.look_ahead().field("roles").exists() {
            loaders(ctx)?
                .roles
                .load_many(users.iter().map(|user| user.model.id))
                .await
                .map_err(batch_error)?;
        }
        Ok(users.into_iter().map(User).collect())
    }

    /// One user of the tenant, or null (`users:read`).
    async fn user(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<User>> {
        ctx.request().require_tenant(Permission::UsersRead)?;
        let id = parse_id("id", &id)?;
        Ok(loaders(ctx)?
            .users
            .load_one(id)
            .await
            .map_err(batch_error)?
            .map(User))
    }

    /// People of the tenant, oldest first (`people:read`). `search` is a case-insensitive
    /// substring of the first name, last name or email; `first` is 1 to 100.
    #[graphql(complexity = "crate::graphql::page_cost(first, 20, child_complexity)")]
    async fn people(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> async_graphql::Result<PersonConnection> {
        let tenant = ctx.request().require_tenant(Permission::PeopleRead)?;
        if search.as_ref().is_some_and(|s| s.len() > MAX_SEARCH_BYTES) {
            return Err(AppError::bad_input(
                "search",
                format!("search must be at most {MAX_SEARCH_BYTES} bytes"),
            )
            .into());
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
            &Person::columns_for(ctx.field()),
        )
        .await?;
        let look_ahead = ctx.look_ahead();
        let creators = [
            look_ahead.field("nodes").field("createdBy"),
            look_ahead.field("edges").field("node").field("createdBy"),
        ];
        if creators.iter().any(|creator| creator.exists()) {
            let with_roles = creators
                .iter()
                .any(|creator| creator.field("roles").exists());
            loaders(ctx)?
                .prime_users(
                    page.people.iter().filter_map(|person| person.created_by),
                    with_roles,
                )
                .await?;
        }
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

    /// One person of the tenant, or null (`people:read`).
    async fn person(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Person>> {
        let tenant = ctx.request().require_tenant(Permission::PeopleRead)?;
        let id = parse_id("id", &id)?;
        Ok(people::find(ctx.state(), tenant, id)
            .await?
            .map(Person::from))
    }

    /// The tenant's roles with their permissions (`roles:read`).
    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Role>> {
        let tenant = ctx.request().require_tenant(Permission::RolesRead)?;
        Ok(roles::list(ctx.state(), tenant)
            .await?
            .into_iter()
            .map(Role::from)
            .collect())
    }

    /// The tenant's own settings (`settings:read`).
    async fn tenant_settings(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<TenantSettingsView> {
        let tenant = ctx.request().require_tenant(Permission::SettingsRead)?;
        Ok(settings::get(ctx.state(), tenant).await?.into())
    }
}

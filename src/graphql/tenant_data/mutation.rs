use async_graphql::{Context, ID, Object};

use crate::{
    auth::tenant::Permission,
    graphql::{ContextExt, parse_id},
    tenant_data::{people, settings, users},
};

use super::{
    inputs::{
        CreatePersonInput, CreateUserInput, PersonInput, UpdateTenantSettingsInput, UpdateUserInput,
    },
    loaders::loaders,
    types::{Person, TenantSettingsView, User},
};

#[derive(Default)]
pub struct TenantDataMutation;

#[Object]
impl TenantDataMutation {
    /// Adds a user to the tenant (`users:write`).
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> async_graphql::Result<User> {
        let tenant = ctx.request().require_tenant(Permission::UsersWrite)?;
        let user = users::create(ctx.state(), tenant, input.into()).await?;
        loaders(ctx)?.forget();
        Ok(User(user))
    }

    /// Changes a user's name, status or password (`users:write`).
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateUserInput,
    ) -> async_graphql::Result<User> {
        let tenant = ctx.request().require_tenant(Permission::UsersWrite)?;
        let id = parse_id("id", &id)?;
        let user = users::update(ctx.state(), tenant, id, input.into()).await?;
        loaders(ctx)?.forget();
        Ok(User(user))
    }

    /// Gives the user a role; again is fine (`users:write`).
    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: String,
    ) -> async_graphql::Result<User> {
        let tenant = ctx.request().require_tenant(Permission::UsersWrite)?;
        let id = parse_id("userId", &user_id)?;
        let user = users::assign_role(ctx.state(), tenant, id, &role).await?;
        loaders(ctx)?.forget();
        Ok(User(user))
    }

    /// Takes a role from the user; one they do not have is fine (`users:write`). It stops
    /// counting on the user's next request.
    async fn remove_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: String,
    ) -> async_graphql::Result<User> {
        let tenant = ctx.request().require_tenant(Permission::UsersWrite)?;
        let id = parse_id("userId", &user_id)?;
        let user = users::remove_role(ctx.state(), tenant, id, &role).await?;
        loaders(ctx)?.forget();
        Ok(User(user))
    }

    /// Records a person; the acting user is its creator (`people:write`).
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

    /// Changes a person (`people:write`).
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

    /// Deletes a person; `NOT_FOUND` when there is none (`people:write`).
    async fn delete_person(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let tenant = ctx.request().require_tenant(Permission::PeopleWrite)?;
        let id = parse_id("id", &id)?;
        people::delete(ctx.state(), tenant, id).await?;
        Ok(true)
    }

    /// Changes the tenant's own settings (`settings:write`); the registry is left alone.
    async fn update_tenant_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantSettingsInput,
    ) -> async_graphql::Result<TenantSettingsView> {
        let tenant = ctx.request().require_tenant(Permission::SettingsWrite)?;
        Ok(settings::update(ctx.state(), tenant, input.into())
            .await?
            .into())
    }
}

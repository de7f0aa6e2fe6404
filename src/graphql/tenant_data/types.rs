use async_graphql::{
    ComplexObject, Context, ID, Object, SelectionField, SimpleObject,
    connection::{Connection, OpaqueCursor},
};
use chrono::{DateTime, FixedOffset, NaiveDate};
use entity::tenant::{person, tenant_settings};
use uuid::Uuid;

use crate::{
    auth::tenant::Permission,
    graphql::ContextExt,
    tenancy::validation::SettingsDraft,
    tenant_data::{people, roles, users},
};

use super::loaders::{batch_error, loaders};

/// A user of the tenant.
pub struct User(pub(super) users::User);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.model.id.to_string())
    }

    /// Stored lower-case.
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

    /// Names of the user's roles, alphabetical (batched across the response).
    async fn roles(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<String>> {
        Ok(loaders(ctx)?
            .roles
            .load_one(self.0.model.id)
            .await
            .map_err(batch_error)?
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

impl Person {
    /// The columns a page must read for the `Person` fields `connection` (a `people` field)
    /// selects under `nodes` or `edges { node }`, fragments followed. A field this does not
    /// know reads every column: a field added to `Person` is never read empty.
    pub(super) fn columns_for(connection: SelectionField<'_>) -> people::PersonColumns {
        use person::Column as C;
        let mut nodes = Vec::new();
        for field in connection.selection_set() {
            match field.name() {
                "nodes" => nodes.extend(field.selection_set()),
                "edges" => {
                    for edge_field in field.selection_set() {
                        if edge_field.name() == "node" {
                            nodes.extend(edge_field.selection_set());
                        }
                    }
                }
                _ => {}
            }
        }
        let mut columns = Vec::new();
        for field in nodes {
            columns.push(match field.name() {
                "__typename" | "id" | "createdAt" => continue,
                "firstName" => C::FirstName,
                "lastName" => C::LastName,
                "email" => C::Email,
                "phone" => C::Phone,
                "address" => C::Address,
                "birthDate" => C::BirthDate,
                "membershipStatus" => C::MembershipStatus,
                "notes" => C::Notes,
                "externalRef" => C::ExternalRef,
                "updatedAt" => C::UpdatedAt,
                "createdBy" => C::CreatedBy,
                _ => return people::PersonColumns::all(),
            });
        }
        people::PersonColumns::with(columns)
    }
}

#[ComplexObject]
impl Person {
    /// The user who recorded this person (null for API keys and deleted users); needs
    /// `users:read`. Batched across the response.
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        ctx.request().require_tenant(Permission::UsersRead)?;
        let Some(id) = self.created_by else {
            return Ok(None);
        };
        Ok(loaders(ctx)?
            .users
            .load_one(id)
            .await
            .map_err(batch_error)?
            .map(User))
    }
}

#[derive(SimpleObject, Default)]
pub struct PeopleCount {
    /// People matching the search, across all pages.
    pub total_count: u64,
}

pub type PersonConnection = Connection<OpaqueCursor<people::PersonCursor>, Person, PeopleCount>;

/// A role and the permission codes it grants.
#[derive(SimpleObject)]
pub struct Role {
    pub id: ID,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

impl From<roles::RoleWithPermissions> for Role {
    fn from(entry: roles::RoleWithPermissions) -> Self {
        Role {
            id: ID(entry.role.id.to_string()),
            name: entry.role.name,
            description: entry.role.description,
            permissions: entry.permissions,
        }
    }
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

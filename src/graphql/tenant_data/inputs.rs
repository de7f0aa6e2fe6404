use async_graphql::InputObject;
use chrono::NaiveDate;
use secrecy::SecretString;

use crate::{
    graphql::tenants::{TenantLimitsInput, TenantSettingsInput},
    tenancy::validation::SettingsDraft,
    tenant_data::{people::PersonFields, settings::SettingsChanges, users},
};

#[derive(InputObject)]
pub struct CreateUserInput {
    /// At most 254 bytes; stored lower-case, unique in the tenant.
    pub email: String,
    /// 8 to 1,024 bytes; without one the user cannot log in until one is set.
    #[graphql(secret)]
    pub password: Option<String>,
    /// At most 200 bytes.
    pub name: Option<String>,
    /// Names of existing roles (admin, member, viewer).
    #[graphql(default_with = "vec![\"member\".to_owned()]")]
    pub roles: Vec<String>,
    /// active (default), inactive, suspended or pending.
    pub status: Option<String>,
}

impl From<CreateUserInput> for users::NewUser {
    fn from(input: CreateUserInput) -> Self {
        users::NewUser {
            email: input.email,
            password: input.password.map(SecretString::from),
            name: input.name,
            roles: input.roles,
            status: input.status,
        }
    }
}

/// Changes to a user; absent fields stay as they are.
#[derive(InputObject)]
pub struct UpdateUserInput {
    pub name: Option<String>,
    /// active, inactive, suspended or pending.
    pub status: Option<String>,
    #[graphql(secret)]
    pub password: Option<String>,
}

impl From<UpdateUserInput> for users::UserChanges {
    fn from(input: UpdateUserInput) -> Self {
        users::UserChanges {
            name: input.name,
            status: input.status,
            password: input.password.map(SecretString::from),
        }
    }
}

/// A new person. Names at most 200 bytes, email 254, phone 40, address 500, membershipStatus 50,
/// notes 5,000.
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

impl From<CreatePersonInput> for PersonFields {
    fn from(input: CreatePersonInput) -> Self {
        PersonFields {
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

/// Changes to a person; absent fields stay as they are. Same limits as `CreatePersonInput`.
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

impl From<PersonInput> for PersonFields {
    fn from(input: PersonInput) -> Self {
        PersonFields {
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

/// Changes to the tenant's settings; absent fields (and absent limits) stay as they are.
#[derive(InputObject)]
pub struct UpdateTenantSettingsInput {
    pub display_name: Option<String>,
    /// Replaces the list: any of basic, analytics, reporting, advanced_security, api_access,
    /// webhooks.
    pub features: Option<Vec<String>>,
    pub limits: Option<TenantLimitsInput>,
    pub timezone: Option<String>,
    pub locale: Option<String>,
}

impl From<UpdateTenantSettingsInput> for SettingsChanges {
    fn from(input: UpdateTenantSettingsInput) -> Self {
        let settings = (input.features.is_some() || input.limits.is_some()).then(|| {
            SettingsDraft::from(TenantSettingsInput {
                features: input.features,
                limits: input.limits,
            })
        });
        SettingsChanges {
            display_name: input.display_name,
            settings,
            timezone: input.timezone,
            locale: input.locale,
        }
    }
}

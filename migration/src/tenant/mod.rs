//! Tenant tables. Every name here is unqualified: the caller's transaction-local
//! `search_path` decides which tenant schema they land in.

use sea_orm_migration::prelude::*;

mod m20260101_000001_create_settings_and_statuses;
mod m20260101_000002_create_users_and_roles;
mod m20260101_000003_create_permissions;
mod m20260101_000004_create_person;
mod m20260201_000005_add_person_external_ref;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20260101_000001_create_settings_and_statuses::Migration),
        Box::new(m20260101_000002_create_users_and_roles::Migration),
        Box::new(m20260101_000003_create_permissions::Migration),
        Box::new(m20260101_000004_create_person::Migration),
        Box::new(m20260201_000005_add_person_external_ref::Migration),
    ]
}

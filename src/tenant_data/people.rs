//! People of a tenant (`person`): keyset-paginated search and changes.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use entity::tenant::person;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, IdenStatic, Iterable,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait, Func},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    auth::tenant::TenantContext,
    db::pinned::{TenantRow, end_read},
    error::{AppError, AppResult},
    state::AppState,
    tenancy::validation::Faults,
};

/// Position after the last person of a page, in `(created_at, id)` order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersonCursor {
    pub created_at: DateTime<FixedOffset>,
    pub id: Uuid,
}

pub struct PeoplePage {
    pub people: Vec<person::Model>,
    pub has_next_page: bool,
    /// Only when asked for: counting costs a second scan.
    pub total_count: Option<u64>,
}

/// The fields of a person as given; on update, absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct PersonFields {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub membership_status: Option<String>,
    pub notes: Option<String>,
}

/// The columns of `person` a page reads. The key and the order's columns come first, always:
/// the cursor is made of them.
#[derive(Debug, Clone)]
pub struct PersonColumns(Vec<person::Column>);

impl PersonColumns {
    /// Every column.
    pub fn all() -> Self {
        Self::with(person::Column::iter())
    }

    /// The key, the order's columns and `wanted`.
    pub fn with(wanted: impl IntoIterator<Item = person::Column>) -> Self {
        let mut columns = vec![person::Column::Id, person::Column::CreatedAt];
        for column in wanted {
            if !columns.iter().any(|have| have.as_str() == column.as_str()) {
                columns.push(column);
            }
        }
        PersonColumns(columns)
    }

    /// A person from a row of these columns, in this order; the columns not read are empty.
    fn decode(&self, row: &TenantRow) -> Result<person::Model, DbErr> {
        use person::Column as C;
        let mut person = person::Model {
            id: row.get(0)?,
            created_at: row.get(1)?,
            first_name: String::new(),
            last_name: String::new(),
            email: None,
            phone: None,
            address: None,
            birth_date: None,
            membership_status: String::new(),
            notes: None,
            created_by: None,
            updated_at: DateTime::default(),
            external_ref: None,
        };
        for (index, column) in self.0.iter().enumerate().skip(2) {
            match column {
                C::Id | C::CreatedAt => {}
                C::FirstName => person.first_name = row.get(index)?,
                C::LastName => person.last_name = row.get(index)?,
                C::Email => person.email = row.get(index)?,
                C::Phone => person.phone = row.get(index)?,
                C::Address => person.address = row.get(index)?,
                C::BirthDate => person.birth_date = row.get(index)?,
                C::MembershipStatus => person.membership_status = row.get(index)?,
                C::Notes => person.notes = row.get(index)?,
                C::CreatedBy => person.created_by = row.get(index)?,
                C::UpdatedAt => person.updated_at = row.get(index)?,
                C::ExternalRef => person.external_ref = row.get(index)?,
            }
        }
        Ok(person)
    }
}

/// A page of people in `(created_at, id)` order, of which only `columns` are read (a
/// GraphQL page reads what its selection asks for: fewer columns to send and decode).
pub async fn page(
    state: &AppState,
    tenant: &TenantContext,
    search: Option<&str>,
    after: Option<&PersonCursor>,
    limit: u64,
    with_total: bool,
    columns: &PersonColumns,
) -> AppResult<PeoplePage> {
    let mut filter = Condition::all();
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        let pattern = || crate::db::contains_pattern(search);
        let lower = |column: person::Column| Expr::expr(Func::lower(Expr::col(column)));
        filter = filter.add(
            Condition::any()
                .add(lower(person::Column::FirstName).like(pattern()))
                .add(lower(person::Column::LastName).like(pattern()))
                .add(lower(person::Column::Email).like(pattern())),
        );
    }
    let mut query = person::Entity::find().filter(filter.clone());
    if let Some(after) = after {
        query = query.filter(
            Condition::any()
                .add(person::Column::CreatedAt.gt(after.created_at))
                .add(
                    Condition::all()
                        .add(person::Column::CreatedAt.eq(after.created_at))
                        .add(person::Column::Id.gt(after.id)),
                ),
        );
    }
    let query = query
        .select_only()
        .columns(columns.0.iter().copied())
        .order_by_asc(person::Column::CreatedAt)
        .order_by_asc(person::Column::Id)
        .limit(limit + 1);
    // A page alone is one gated statement; with its count it is two, in a pinned transaction.
    let (rows, total_count) = if with_total {
        let txn = tenant.begin(state).await?;
        let total = person::Entity::find().filter(filter).count(&txn).await?;
        let rows = txn.query_all(query.as_query()).await?;
        end_read(txn);
        (
            rows.into_iter().map(TenantRow::Pooled).collect(),
            Some(total),
        )
    } else {
        (tenant.read_rows(state, query).await?, None)
    };
    let mut people = rows
        .iter()
        .map(|row| columns.decode(row))
        .collect::<Result<Vec<_>, _>>()?;
    let has_next_page = people.len() as u64 > limit;
    people.truncate(limit as usize);
    Ok(PeoplePage {
        people,
        has_next_page,
        total_count,
    })
}

pub async fn find(
    state: &AppState,
    tenant: &TenantContext,
    id: Uuid,
) -> AppResult<Option<person::Model>> {
    let found = tenant.read(state, person::Entity::find_by_id(id)).await?;
    Ok(found.into_iter().next())
}

pub async fn create(
    state: &AppState,
    tenant: &TenantContext,
    fields: PersonFields,
) -> AppResult<person::Model> {
    let mut row = person::ActiveModel {
        id: Set(Uuid::new_v4()),
        created_by: Set(tenant.user_id()),
        ..Default::default()
    };
    apply(&mut row, fields, true)?;
    let txn = tenant.begin(state).await?;
    let created = person::Entity::insert(row)
        .exec_with_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(created)
}

pub async fn update(
    state: &AppState,
    tenant: &TenantContext,
    id: Uuid,
    fields: PersonFields,
) -> AppResult<person::Model> {
    let mut row = person::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id),
        updated_at: Set(Utc::now().fixed_offset()),
        ..Default::default()
    };
    apply(&mut row, fields, false)?;
    let txn = tenant.begin(state).await?;
    let updated = match row.update(&txn).await {
        Ok(updated) => updated,
        Err(sea_orm::DbErr::RecordNotUpdated) => return Err(AppError::not_found("no such person")),
        Err(err) => return Err(err.into()),
    };
    txn.commit().await?;
    Ok(updated)
}

pub async fn delete(state: &AppState, tenant: &TenantContext, id: Uuid) -> AppResult<()> {
    let txn = tenant.begin(state).await?;
    let deleted = person::Entity::delete_by_id(id).exec(&txn).await?;
    txn.commit().await?;
    if deleted.rows_affected == 0 {
        return Err(AppError::not_found("no such person"));
    }
    Ok(())
}

/// Checks the given fields and sets them on `row`; a new person needs both names.
fn apply(row: &mut person::ActiveModel, fields: PersonFields, creating: bool) -> AppResult<()> {
    let mut checks = Faults::default();
    let first_name = checks.name("firstName", fields.first_name, creating, 200);
    let last_name = checks.name("lastName", fields.last_name, creating, 200);
    let email = checks.optional_email("email", fields.email);
    let phone = checks.text("phone", fields.phone, 40);
    let address = checks.text("address", fields.address, 500);
    let membership_status = checks.text("membershipStatus", fields.membership_status, 50);
    let notes = checks.text("notes", fields.notes, 5000);
    checks.finish()?;
    if let Some(value) = first_name {
        row.first_name = Set(value);
    }
    if let Some(value) = last_name {
        row.last_name = Set(value);
    }
    if let Some(value) = email {
        row.email = Set(Some(value));
    }
    if let Some(value) = phone {
        row.phone = Set(Some(value));
    }
    if let Some(value) = address {
        row.address = Set(Some(value));
    }
    if let Some(value) = fields.birth_date {
        row.birth_date = Set(Some(value));
    }
    if let Some(value) = membership_status {
        row.membership_status = Set(value);
    }
    if let Some(value) = notes {
        row.notes = Set(Some(value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(columns: &PersonColumns) -> Vec<&'static str> {
        columns.0.iter().map(|column| column.as_str()).collect()
    }

    #[test]
    fn columns_read_start_with_the_key_and_the_order_and_name_each_once() {
        use person::Column as C;
        let wanted = PersonColumns::with([C::LastName, C::Id, C::LastName, C::CreatedAt]);
        assert_eq!(names(&wanted), ["id", "created_at", "last_name"]);
        let all = PersonColumns::all();
        assert_eq!(names(&all)[..2], ["id", "created_at"]);
        assert_eq!(all.0.len(), person::Column::iter().count());
    }
}

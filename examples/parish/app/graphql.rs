//! The parish's GraphQL: `donations`, `donation` and `createDonation`, with each donation's
//! person batched per operation.

use std::collections::HashMap;

use async_graphql::{
    ComplexObject, Context, ID, InputObject, Object, SimpleObject,
    connection::{Connection, CursorType, Edge, OpaqueCursor},
};
use chrono::{DateTime, FixedOffset};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, SqlErr,
};
use serde::{Deserialize, Serialize};
use tenantgraph::{
    app::{Permission, PermissionExt, TenantBatch, TenantData, TenantDataExt, TenantTransaction},
    entity::tenant::person,
    error::{AppError, AppResult},
    graphql::{MAX_PAGE_SIZE, page_cost, parse_id, tenant_data::Person},
};
use uuid::Uuid;

use super::{DONATIONS_READ, DONATIONS_WRITE, donation};

/// Longest donor name accepted.
const MAX_DONOR_NAME_CHARS: usize = 200;

/// A gift to the parish.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Donation {
    pub id: ID,
    /// In cents; always above zero.
    pub amount_cents: i32,
    pub donor_name: String,
    pub created_at: DateTime<FixedOffset>,
    #[graphql(skip)]
    pub person_id: Option<Uuid>,
}

impl From<donation::Model> for Donation {
    fn from(model: donation::Model) -> Self {
        Donation {
            id: ID(model.id.to_string()),
            amount_cents: model.amount_cents,
            donor_name: model.donor_name,
            created_at: model.created_at,
            person_id: model.person_id,
        }
    }
}

#[ComplexObject]
impl Donation {
    /// The person of the parish who gave, if known (`people:read`). Batched across the
    /// response.
    async fn person(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Person>> {
        let tenant = ctx.tenant_data(Permission::PeopleRead)?;
        let Some(id) = self.person_id else {
            return Ok(None);
        };
        Ok(tenant.load_one::<PeopleById>(id).await?.map(Person::from))
    }
}

/// People by id, in the operation's tenant.
#[derive(Default)]
pub struct PeopleById;

impl TenantBatch for PeopleById {
    type Key = Uuid;
    type Value = person::Model;

    async fn load(
        &self,
        txn: &TenantTransaction,
        keys: &[Uuid],
    ) -> AppResult<HashMap<Uuid, person::Model>> {
        let people = person::Entity::find()
            .filter(person::Column::Id.is_in(keys.iter().copied()))
            .all(txn)
            .await?;
        Ok(people
            .into_iter()
            .map(|person| (person.id, person))
            .collect())
    }
}

/// Position after the last donation of a page, in `(created_at, id)` order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DonationCursor {
    pub created_at: DateTime<FixedOffset>,
    pub id: Uuid,
}

#[derive(SimpleObject, Default)]
pub struct DonationsCount {
    /// Donations across all pages.
    pub total_count: u64,
}

pub type DonationConnection = Connection<OpaqueCursor<DonationCursor>, Donation, DonationsCount>;

#[derive(Default)]
pub struct ParishQuery;

#[Object]
impl ParishQuery {
    /// The parish's donations, oldest first (`donations:read`); `first` is 1 to 100.
    #[graphql(complexity = "page_cost(first, 20, child_complexity)")]
    async fn donations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<DonationConnection> {
        let tenant = ctx.tenant_data(DONATIONS_READ.permission())?;
        let after = after
            .map(|cursor| {
                OpaqueCursor::<DonationCursor>::decode_cursor(&cursor)
                    .map_err(|_| AppError::bad_input("after", "not a cursor of this connection"))
            })
            .transpose()?;
        let limit = first.unwrap_or(20).clamp(1, MAX_PAGE_SIZE) as u64;
        let look_ahead = ctx.look_ahead();
        let with_total = look_ahead.field("totalCount").exists();
        let with_person = look_ahead.field("nodes").field("person").exists()
            || look_ahead
                .field("edges")
                .field("node")
                .field("person")
                .exists();

        let page = page(&tenant, after.as_deref(), limit, with_total).await?;
        if with_person && tenant.require(Permission::PeopleRead).is_ok() {
            // The whole page's people in one batch, not one look-up per donation.
            tenant
                .load_many::<PeopleById>(page.donations.iter().filter_map(|d| d.person_id))
                .await?;
        }
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            page.has_next_page,
            DonationsCount {
                total_count: page.total_count,
            },
        );
        connection
            .edges
            .extend(page.donations.into_iter().map(|donation| {
                let cursor = OpaqueCursor(DonationCursor {
                    created_at: donation.created_at,
                    id: donation.id,
                });
                Edge::new(cursor, Donation::from(donation))
            }));
        Ok(connection)
    }

    /// One donation of the parish, or null (`donations:read`).
    async fn donation(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Donation>> {
        let tenant = ctx.tenant_data(DONATIONS_READ.permission())?;
        let id = parse_id("id", &id)?;
        Ok(find(&tenant, id).await?.map(Donation::from))
    }
}

/// A donation to record.
#[derive(InputObject)]
pub struct CreateDonationInput {
    /// In cents, above zero.
    pub amount_cents: i32,
    /// 1 to 200 characters.
    pub donor_name: String,
    /// A person of the parish.
    pub person_id: Option<ID>,
}

#[derive(Default)]
pub struct ParishMutation;

#[Object]
impl ParishMutation {
    /// Records a donation (`donations:write`).
    async fn create_donation(
        &self,
        ctx: &Context<'_>,
        input: CreateDonationInput,
    ) -> async_graphql::Result<Donation> {
        let tenant = ctx.tenant_data(DONATIONS_WRITE.permission())?;
        Ok(create(&tenant, input).await?.into())
    }
}

/// One page of donations after `after`, in `(created_at, id)` order.
struct DonationsPage {
    donations: Vec<donation::Model>,
    has_next_page: bool,
    /// Zero unless asked for: counting costs a second scan.
    total_count: u64,
}

async fn page(
    tenant: &TenantData<'_>,
    after: Option<&DonationCursor>,
    limit: u64,
    with_total: bool,
) -> AppResult<DonationsPage> {
    let txn = tenant.begin().await?;
    let total_count = if with_total {
        donation::Entity::find().count(&txn).await?
    } else {
        0
    };
    let mut query = donation::Entity::find();
    if let Some(after) = after {
        query = query.filter(
            Condition::any()
                .add(donation::Column::CreatedAt.gt(after.created_at))
                .add(
                    Condition::all()
                        .add(donation::Column::CreatedAt.eq(after.created_at))
                        .add(donation::Column::Id.gt(after.id)),
                ),
        );
    }
    let mut donations = query
        .order_by_asc(donation::Column::CreatedAt)
        .order_by_asc(donation::Column::Id)
        .limit(limit + 1)
        .all(&txn)
        .await?;
    let has_next_page = donations.len() as u64 > limit;
    donations.truncate(limit as usize);
    Ok(DonationsPage {
        donations,
        has_next_page,
        total_count,
    })
}

async fn find(tenant: &TenantData<'_>, id: Uuid) -> AppResult<Option<donation::Model>> {
    let txn = tenant.begin().await?;
    Ok(donation::Entity::find_by_id(id).one(&txn).await?)
}

async fn create(tenant: &TenantData<'_>, input: CreateDonationInput) -> AppResult<donation::Model> {
    if input.amount_cents <= 0 {
        return Err(AppError::bad_input("amountCents", "must be above zero"));
    }
    let donor_name = input.donor_name.trim();
    if donor_name.is_empty() || donor_name.chars().count() > MAX_DONOR_NAME_CHARS {
        return Err(AppError::bad_input(
            "donorName",
            format!("must be 1 to {MAX_DONOR_NAME_CHARS} characters"),
        ));
    }
    let person_id = input
        .person_id
        .as_ref()
        .map(|id| parse_id("personId", id))
        .transpose()?;
    let row = donation::ActiveModel {
        id: Set(Uuid::new_v4()),
        amount_cents: Set(input.amount_cents),
        donor_name: Set(donor_name.to_owned()),
        person_id: Set(person_id),
        ..Default::default()
    };
    let txn = tenant.begin().await?;
    // The foreign key proves the person is one of this tenant's: another tenant's id is
    // simply not in this schema.
    let created = donation::Entity::insert(row)
        .exec_with_returning(&txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                AppError::bad_input("personId", "no person of this parish has this id")
            }
            _ => AppError::from(err),
        })?;
    txn.commit().await?;
    Ok(created)
}

//! Reading the registry: keyset-paginated, filtered listings of live tenants.

use chrono::{DateTime, FixedOffset};
use entity::public::tenants;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{error::AppResult, tenancy::TenantStatus};

/// What a listing keeps.
#[derive(Debug, Default, Clone)]
pub struct TenantQuery {
    pub status: Option<TenantStatus>,
    pub tenant_type: Option<String>,
    /// Case-insensitive substring of the name or the domain.
    pub search: Option<String>,
}

/// Position after the last tenant of a page, in `(created_at, id)` order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantCursor {
    pub created_at: DateTime<FixedOffset>,
    pub id: Uuid,
}

pub struct TenantPage {
    pub tenants: Vec<tenants::Model>,
    pub has_next_page: bool,
    /// Only when asked for: counting costs a second scan.
    pub total_count: Option<u64>,
}

/// Up to `limit` live tenants after `after`, oldest first, and how many match in all.
pub async fn list(
    db: &impl ConnectionTrait,
    query: &TenantQuery,
    after: Option<&TenantCursor>,
    limit: u64,
    with_total: bool,
) -> AppResult<TenantPage> {
    let filter = filter(query);
    let total_count = if with_total {
        Some(
            tenants::Entity::find()
                .filter(filter.clone())
                .count(db)
                .await?,
        )
    } else {
        None
    };
    let mut page = tenants::Entity::find().filter(filter);
    if let Some(after) = after {
        page = page.filter(
            Condition::any()
                .add(tenants::Column::CreatedAt.gt(after.created_at))
                .add(
                    Condition::all()
                        .add(tenants::Column::CreatedAt.eq(after.created_at))
                        .add(tenants::Column::Id.gt(after.id)),
                ),
        );
    }
    let mut tenants = page
        .order_by_asc(tenants::Column::CreatedAt)
        .order_by_asc(tenants::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let has_next_page = tenants.len() as u64 > limit;
    tenants.truncate(limit as usize);
    Ok(TenantPage {
        tenants,
        has_next_page,
        total_count,
    })
}

fn filter(query: &TenantQuery) -> Condition {
    let mut condition = Condition::all().add(tenants::Column::DeletedAt.is_null());
    if let Some(status) = query.status {
        condition = condition.add(tenants::Column::Status.eq(status.as_db()));
    }
    if let Some(tenant_type) = &query.tenant_type {
        condition = condition.add(tenants::Column::TenantType.eq(tenant_type.as_str()));
    }
    if let Some(search) = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let pattern = || crate::db::contains_pattern(search);
        condition = condition.add(
            Condition::any()
                .add(
                    Expr::expr(Func::lower(Expr::col(tenants::Column::TenantName))).like(pattern()),
                )
                .add(Expr::col(tenants::Column::Domain).like(pattern())),
        );
    }
    condition
}

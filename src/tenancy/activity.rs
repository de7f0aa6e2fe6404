//! `lastActivityAt`: written at most once a minute per tenant, off the request path.

use std::time::Duration;

use entity::public::tenants;
use moka::future::Cache;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

pub const DEBOUNCE: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct ActivityTracker {
    recently_written: Cache<Uuid, ()>,
}

impl Default for ActivityTracker {
    fn default() -> Self {
        ActivityTracker {
            recently_written: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(DEBOUNCE)
                .build(),
        }
    }
}

impl ActivityTracker {
    /// Notes activity of a tenant; the first note in a debounce window writes it.
    pub async fn touch(&self, db: &crate::db::Pool, tenant_id: Uuid) {
        let entry = self.recently_written.entry(tenant_id).or_insert(()).await;
        if !entry.is_fresh() {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            let written = tenants::Entity::update_many()
                .col_expr(tenants::Column::LastActivityAt, Expr::current_timestamp())
                .filter(tenants::Column::Id.eq(tenant_id))
                .exec(&db)
                .await;
            if let Err(err) = written {
                tracing::warn!(tenant = %tenant_id, error = %err, "could not record tenant activity");
            }
        });
    }
}

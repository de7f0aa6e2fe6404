//! `lastActivityAt`: written at most once a minute per tenant, off the request path.

use std::time::Duration;

use entity::public::tenants;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use crate::primitives::debounce::Debounce;

pub const DEBOUNCE: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct ActivityTracker {
    recently_written: Debounce,
}

impl Default for ActivityTracker {
    fn default() -> Self {
        ActivityTracker {
            recently_written: Debounce::new(DEBOUNCE),
        }
    }
}

impl ActivityTracker {
    /// Notes activity of a tenant; the first note in a debounce window writes it.
    pub async fn touch(&self, db: &crate::db::Pool, tenant_id: Uuid) {
        if !self.recently_written.first_note(tenant_id).await {
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

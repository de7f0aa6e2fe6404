//! Finding the tenants a fleet migration has to touch: one registry query, however many
//! tenants there are.

use entity::public::tenants;
use migration::tenant_migration_names;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::ExprTrait};

use crate::{error::AppResult, state::SharedState, tenancy::migrator::Target};

/// Live tenants with a schema whose recorded revision is not `target`: one registry query,
/// whatever the number of tenants.
pub async fn tenants_behind(
    state: &SharedState,
    target: &Target,
) -> AppResult<Vec<tenants::Model>> {
    let names = tenant_migration_names();
    let wanted = match target {
        Target::Head => names.last().cloned(),
        Target::Base => None,
        Target::Revision(name) => Some(name.clone()),
    };
    let behind = match wanted {
        Some(revision) => tenants::Column::CurrentRevision
            .ne(revision)
            .or(tenants::Column::CurrentRevision.is_null()),
        None => tenants::Column::CurrentRevision.is_not_null(),
    };
    Ok(tenants::Entity::find()
        .filter(tenants::Column::DeletedAt.is_null())
        .filter(tenants::Column::SchemaProvisioned.eq(true))
        .filter(behind)
        .order_by_asc(tenants::Column::CreatedAt)
        .all(&state.db)
        .await?)
}

//! `migrate tenant`, `migrate tenants` and `tenants …`: the tenant services at a terminal.

use anyhow::Context;
use migration::tenant_migration_names;

use crate::{
    audit::Actor,
    db::tools::PgTools,
    primitives::schema_name::SchemaName,
    state::SharedState,
    tenancy::{
        backup,
        migrate::{self, MigrationMode},
        migrator::{self, Target},
        registry, servers,
    },
};

use super::{TenantSchemaAction, TenantsAction};

pub async fn migrate_one(
    state: &SharedState,
    schema: &str,
    action: TenantSchemaAction,
) -> anyhow::Result<()> {
    let schema = SchemaName::parse(schema).context("--schema")?;
    let tenant = registry::find_by_schema(&state.db, &schema)
        .await
        .context("looking the schema up in the registry")?
        .filter(|tenant| tenant.deleted_at.is_none())
        .with_context(|| format!("schema {schema} belongs to no tenant of the registry"))?;
    let schema_db = servers::pool_of(state, &tenant).await?;
    let target = match action {
        TenantSchemaAction::Status => {
            let status = migrator::status(&schema_db, &schema).await?;
            for name in &status.applied {
                println!("applied  {name}");
            }
            for name in &status.pending {
                println!("pending  {name}");
            }
            return Ok(());
        }
        TenantSchemaAction::History => {
            for (name, applied_at) in migrator::history(&schema_db, &schema).await? {
                let at = chrono::DateTime::from_timestamp(applied_at, 0)
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_default();
                println!("{at}  {name}");
            }
            return Ok(());
        }
        TenantSchemaAction::Up { to } => parse_target(to.as_deref())?,
        TenantSchemaAction::Down { steps } => {
            let applied = migrator::status(&schema_db, &schema).await?.applied;
            match applied.len().checked_sub(steps) {
                Some(kept) if kept > 0 => Target::Revision(applied[kept - 1].clone()),
                _ => Target::Base,
            }
        }
    };
    let (_, reached) = migrate::run_migrations(
        state,
        &Actor::system(),
        tenant.id,
        target,
        MigrationMode::Stepwise,
    )
    .await
    .with_context(|| format!("migrating {schema}"))?;
    println!(
        "{schema} is at {}",
        reached.current_revision().unwrap_or("base")
    );
    Ok(())
}

pub async fn list(state: &SharedState) -> anyhow::Result<()> {
    let tenants = registry::all_live(&state.db).await?;
    println!(
        "{:<36} {:<30} {:<32} {:<12} revision",
        "id", "domain", "schema", "status"
    );
    for tenant in tenants {
        println!(
            "{:<36} {:<30} {:<32} {:<12} {}",
            tenant.id,
            tenant.domain,
            tenant.schema_name,
            tenant.status.as_db(),
            tenant.current_revision.as_deref().unwrap_or("base")
        );
    }
    Ok(())
}

pub async fn reconcile(state: &SharedState) -> anyhow::Result<()> {
    let orphans = registry::orphan_schemas(&state.db)
        .await
        .context("listing schemas no tenant owns")?;
    for schema in &orphans {
        println!("orphan schema (no tenant): {schema}");
    }
    let mut problems = orphans.len();
    for tenant in registry::all_live(&state.db).await? {
        let schema = registry::schema_of(&tenant);
        let exists =
            migrator::schema_exists(&servers::pool_of(state, &tenant).await?, &schema).await?;
        if tenant.schema_provisioned && !exists {
            problems += 1;
            println!(
                "tenant {} ({}): its schema {schema} is missing",
                tenant.domain, tenant.id
            );
        }
        if tenant.status == entity::public::tenants::TenantStatus::Provisioning {
            problems += 1;
            println!(
                "tenant {} ({}): stuck in PROVISIONING",
                tenant.domain, tenant.id
            );
        }
    }
    if problems > 0 {
        // A non-zero exit, so that a script or a monitor notices.
        anyhow::bail!("{problems} disagreement(s) between the registry and the database");
    }
    println!("the registry and the database agree");
    Ok(())
}

pub fn parse_target(to: Option<&str>) -> anyhow::Result<Target> {
    Target::parse("--to", to.unwrap_or("head")).map_err(|_| {
        anyhow::anyhow!(
            "unknown revision {:?}: expected head, base or one of {}",
            to.unwrap_or_default(),
            tenant_migration_names().join(", ")
        )
    })
}

/// `tenants backup` and `tenants restore`.
pub async fn backup_or_restore(
    state: &SharedState,
    tools: &PgTools,
    action: TenantsAction,
) -> anyhow::Result<()> {
    match action {
        TenantsAction::Backup { tenant, out } => {
            let tenant = backup::find_tenant(&state.db, &tenant).await?;
            let done = backup::backup(state, tools, &tenant, &out)
                .await
                .with_context(|| format!("backing up tenant {}", tenant.domain))?;
            println!(
                "backed up tenant {} ({}, schema {}, revision {}) to {} ({} bytes)",
                done.tenant.domain,
                done.tenant.id,
                done.tenant.schema_name,
                done.revision.as_deref().unwrap_or("base"),
                out.display(),
                done.bytes
            );
        }
        TenantsAction::Restore { file, as_domain } => {
            let done = backup::restore(state, tools, &file, as_domain.as_deref())
                .await
                .with_context(|| format!("restoring {}", file.display()))?;
            let tenant = &done.tenant;
            println!(
                "restored tenant {} ({}, schema {}, revision {}, status {})",
                tenant.domain,
                tenant.id,
                tenant.schema_name,
                tenant.current_revision.as_deref().unwrap_or("base"),
                tenant.status.as_db()
            );
            println!("  API key (shown only now): {}", done.api_key);
            println!(
                "  health: {}",
                format!("{:?}", done.health.status).to_uppercase()
            );
        }
        _ => unreachable!("only backup and restore come here"),
    }
    Ok(())
}

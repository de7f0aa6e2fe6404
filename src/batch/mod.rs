//! Batches: provisioning tenants by the hundred, migrating the fleet and updating many tenants
//! at once, on one durable job machinery. A batch and one job per tenant are written before any work starts; each job
//! records how it ends; progress events stream to subscribers on every server. A batch belongs
//! to the live server holding its lock: when that server dies, any other one (or the same one
//! restarted) takes it over within seconds, undoes what was half made and runs the unfinished
//! tenants again ([`recovery`]); a server that is stopped drains first ([`Runs`]).

pub mod events;
mod lock;
pub mod progress;
pub mod recovery;
mod runner;
mod runs;

pub use runs::Runs;

use std::collections::{HashMap, HashSet};

use anyhow::Context;
use chrono::Utc;
use entity::public::{provisioning_batches, provisioning_jobs, tenants};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    audit::Actor,
    batch::lock::BatchLock,
    db::servers::CONTROL_SERVER,
    error::{AppError, AppResult},
    primitives::{
        locks::{self, Take},
        schema_name::SchemaName,
    },
    state::SharedState,
    tenancy::{
        admin::{self, TenantPatch, Undo},
        fleet,
        migrator::Target,
        moves,
        registry::{self, TenantQuery, find_live},
        seed::{PendingAdmin, SeedRole},
        templates,
        validation::{Faults, TenantDraft, ValidTenant, validate_new_tenant, validate_settings},
    },
};

pub use entity::public::{
    provisioning_batches::{BatchKind, BatchStatus},
    provisioning_jobs::JobStatus,
};

/// How a batch runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchOptions {
    /// Tenants worked on at once; capped by `MAX_CONCURRENT_OPERATIONS` and the pool.
    pub max_concurrency: u32,
    /// All or nothing: when any tenant fails, every tenant the batch made is undone.
    pub atomic: bool,
    /// Further attempts after a transient failure (never after bad input or a conflict).
    pub retry_attempts: u32,
    /// Limit per tenant.
    pub timeout_seconds: u32,
    /// Answer with the finished batch instead of at once.
    pub wait: bool,
}

/// A batch as stored, and, for a batch that was waited for, the new tenants' API keys by job.
pub struct BatchReport {
    pub batch: provisioning_batches::Model,
    pub jobs: Vec<provisioning_jobs::Model>,
    pub api_keys: HashMap<Uuid, String>,
    /// The database server of each job's tenant (by tenant id), for reports per server.
    pub servers: HashMap<Uuid, String>,
    /// For a batch that was not waited for: its run, which yields the API keys when it ends.
    pub running: Option<tokio::task::JoinHandle<HashMap<Uuid, String>>>,
}

/// What running a job (again) needs, stored with the job when the batch is submitted, so that
/// any server can resume it after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum JobInput {
    /// A new tenant's draft (checked at submission) and its administrator with the password
    /// already hashed: the password itself is never stored.
    Provision {
        tenant: Box<TenantDraft>,
        admin: Option<PendingAdmin>,
        /// The template's roles, resolved at submission (its settings are in `tenant`), so a
        /// resumed job seeds the same whatever became of the template.
        #[serde(default)]
        roles: Vec<SeedRole>,
    },
    /// Where the tenant was before, to return it there if an atomic batch is undone.
    #[serde(rename_all = "camelCase")]
    Migrate { from_revision: Option<String> },
    /// The change (its template resolved at submission), and, once it committed, how to take it
    /// back: written in the change's own transaction, so a job that has it is done.
    Update {
        patch: Box<TenantPatch>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<Undo>,
    },
    /// The servers of a move, and, once it switched, how long writes were held (milliseconds):
    /// written in the switch's own transaction.
    #[serde(rename_all = "camelCase")]
    Move {
        from_server: String,
        to_server: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        write_pause_ms: Option<i64>,
    },
}

/// Starts moving a tenant to database server `to_server`: a batch of one job (see
/// [`crate::tenancy::moves`]). Refused before anything starts as `moves::check` says.
#[tracing::instrument(
    name = "move tenant",
    skip_all,
    fields(batch_id = tracing::field::Empty, tenant_id = %tenant_id)
)]
pub async fn move_tenant(
    state: &SharedState,
    actor: &Actor,
    tenant_id: Uuid,
    to_server: &str,
    options: BatchOptions,
) -> AppResult<BatchReport> {
    let options = effective(state, options)?;
    // Held from the check until the job is recorded (which later checks find): a second move
    // asked for meanwhile is a conflict.
    let guard = state.db.begin().await?;
    let free = guard
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("SELECT {} AS free", locks::take(Take::TryTransaction, 1)),
            [locks::move_key(tenant_id).into()],
        ))
        .await?
        .map(|row| row.try_get::<bool>("", "free"))
        .transpose()?
        .unwrap_or(false);
    if !free {
        return Err(moves::already_moving());
    }
    let (tenant, from_server) = moves::check(state, tenant_id, to_server).await?;
    let to_server = to_server.trim().to_owned();
    let jobs = jobs_of(std::slice::from_ref(&tenant), |_| JobInput::Move {
        from_server: from_server.clone(),
        to_server: to_server.clone(),
        write_pause_ms: None,
    });
    let detached = BatchOptions {
        wait: false,
        ..options.clone()
    };
    let mut report = start(state, actor, BatchKind::Move, None, detached, jobs).await?;
    guard.rollback().await?;
    if !options.wait {
        return Ok(report);
    }
    if let Some(run) = report.running.take() {
        run.await
            .context("the batch task failed")
            .map_err(AppError::internal)?;
    }
    Ok(load(state, report.batch.id)
        .await?
        .expect("the batch was just written"))
}

/// The write pause of a move batch's job, once it switched.
pub fn write_pause_ms(job: &provisioning_jobs::Model) -> Option<i64> {
    match job.input.clone().map(serde_json::from_value) {
        Some(Ok(JobInput::Move { write_pause_ms, .. })) => write_pause_ms,
        _ => None,
    }
}

/// The tenants a bulk update changes.
pub enum TenantSelection {
    Ids(Vec<Uuid>),
    Filter(TenantQuery),
}

/// Starts provisioning `drafts`. Only whole-batch faults (size) are errors; a tenant's bad
/// input or clash fails that tenant alone.
#[tracing::instrument(
    name = "provision tenants",
    skip_all,
    fields(batch_id = tracing::field::Empty, tenants = drafts.len())
)]
pub async fn provision_tenants(
    state: &SharedState,
    actor: &Actor,
    drafts: Vec<TenantDraft>,
    options: BatchOptions,
) -> AppResult<BatchReport> {
    check_batch_size(state, "tenants", drafts.len())?;
    let options = effective(state, options)?;
    let prefix = &state.config.tenant_schema_prefix;
    let mut jobs = Vec::with_capacity(drafts.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (position, mut draft) in drafts.into_iter().enumerate() {
        let schema = match &draft.schema_name {
            Some(name) => SchemaName::parse(name).ok(),
            None => SchemaName::from_domain(prefix, &draft.domain).ok(),
        };
        let mut job = new_job(
            position,
            &draft.tenant_name,
            &draft.domain,
            schema.map(|s| s.as_str().to_owned()),
            None,
        );
        // Checked now, so that a resumed job never needs what is not stored (the password);
        // a refusal is reported when the batch runs.
        let refused = match templates::apply(&state.db, &mut draft).await {
            Ok(roles) => refusal(&draft, prefix, &mut seen, position).map(|valid| (valid, roles)),
            Err(error @ AppError::BadUserInput { .. }) => Err(error),
            Err(other) => return Err(other),
        };
        match refused {
            Err(error) => {
                job.error_code = Set(Some(error.code().to_owned()));
                job.error_message = Set(Some(error.client_message().0));
            }
            Ok((valid, roles)) => {
                let admin = match valid.admin {
                    Some(admin) => Some(PendingAdmin {
                        email: admin.email,
                        name: admin.name,
                        password_hash: state.passwords.hash(admin.password).await?,
                    }),
                    None => None,
                };
                draft.admin = None;
                let input = JobInput::Provision {
                    tenant: Box::new(draft),
                    admin,
                    roles,
                };
                job.input = Set(Some(serde_json::to_value(input).expect("inputs serialise")));
            }
        }
        jobs.push(job);
    }
    start(state, actor, BatchKind::Provision, None, options, jobs).await
}

/// Why a tenant of a batch is refused before any work: bad input, or the same domain or schema
/// as an earlier tenant of the batch.
fn refusal(
    draft: &TenantDraft,
    prefix: &str,
    seen: &mut HashMap<String, usize>,
    position: usize,
) -> AppResult<ValidTenant> {
    let valid = validate_new_tenant(draft, prefix).map_err(|faults| AppError::BadUserInput {
        field: None,
        message: faults.iter().map(describe).collect::<Vec<_>>().join("; "),
    })?;
    let keys = [valid.domain.clone(), valid.schema.as_str().to_owned()];
    if let Some(first) = keys.iter().find_map(|key| seen.get(key).copied()) {
        return Err(AppError::conflict(
            "domain",
            format!(
                "the same domain or schema as tenant #{} of this batch",
                first + 1
            ),
        ));
    }
    for key in keys {
        seen.insert(key, position);
    }
    Ok(valid)
}

/// One validation fault as `field: message`.
fn describe(error: &AppError) -> String {
    match error {
        AppError::BadUserInput {
            field: Some(field),
            message,
        } => format!("{field}: {message}"),
        other => other.to_string(),
    }
}

/// Starts migrating tenants to `target`: the given ones, or every tenant behind it.
#[tracing::instrument(
    name = "migrate tenants",
    skip_all,
    fields(batch_id = tracing::field::Empty, target = ?target)
)]
pub async fn migrate_tenants(
    state: &SharedState,
    actor: &Actor,
    target: Target,
    tenant_ids: Option<Vec<Uuid>>,
    options: BatchOptions,
) -> AppResult<BatchReport> {
    let tenants: Vec<tenants::Model> = match tenant_ids {
        Some(ids) => {
            check_batch_size(state, "tenantIds", ids.len())?;
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                found.push(find_live(&state.db, id).await?);
            }
            found
        }
        None => {
            let behind = fleet::tenants_behind(state, &target).await?;
            // Nothing behind is an empty batch; more than a batch holds is refused as a list is.
            if !behind.is_empty() {
                check_batch_size(state, "tenantIds", behind.len())?;
            }
            behind
        }
    };
    let options = effective(state, options)?;
    let jobs = jobs_of(&tenants, |tenant| JobInput::Migrate {
        from_revision: tenant.current_revision.clone(),
    });
    let revision = match &target {
        Target::Head => "head".to_owned(),
        Target::Base => "base".to_owned(),
        Target::Revision(name) => name.clone(),
    };
    start(
        state,
        actor,
        BatchKind::Migrate,
        Some(revision),
        options,
        jobs,
    )
    .await
}

/// Starts applying `patch` to the selected tenants. Refused as a whole, before anything starts:
/// fields that belong to one tenant alone, bad values, unknown ids (`NOT_FOUND` each), and a
/// selection outside 1 to `MAX_TENANTS_PER_BATCH` tenants; a filter matching no tenant is an
/// empty batch.
#[tracing::instrument(
    name = "update tenants",
    skip_all,
    fields(batch_id = tracing::field::Empty)
)]
pub async fn update_tenants(
    state: &SharedState,
    actor: &Actor,
    selection: TenantSelection,
    mut patch: TenantPatch,
    options: BatchOptions,
) -> Result<BatchReport, Vec<AppError>> {
    let mut faults = Faults::default();
    for field in patch.own_fields() {
        faults.add(
            field,
            format!("{field} belongs to one tenant: change it with updateTenant"),
        );
    }
    if patch.is_empty() {
        faults.add("input", "nothing to change");
    }
    faults.tenant_type(patch.tenant_type.as_deref());
    validate_settings(&mut faults, patch.settings.as_ref());
    if let Err(fault) = admin::resolve_template(state, &mut patch).await {
        faults.push(fault);
    }
    faults.into_result()?;
    let options = effective(state, options).map_err(|e| vec![e])?;
    let tenants = selected(state, selection).await?;
    let jobs = jobs_of(&tenants, |_| JobInput::Update {
        patch: Box::new(patch.clone()),
        undo: None,
    });
    start(state, actor, BatchKind::Update, None, options, jobs)
        .await
        .map_err(|e| vec![e])
}

/// The live tenants a bulk update names: every id must be one (`NOT_FOUND` for each that is
/// not), and a filter may match no more than a batch holds.
async fn selected(
    state: &SharedState,
    selection: TenantSelection,
) -> Result<Vec<tenants::Model>, Vec<AppError>> {
    let limit = u64::from(state.config.max_tenants_per_batch);
    match selection {
        TenantSelection::Ids(ids) => {
            check_batch_size(state, "tenantIds", ids.len()).map_err(|e| vec![e])?;
            let mut unique = HashSet::new();
            if let Some(twice) = ids.iter().find(|id| !unique.insert(**id)) {
                return Err(vec![AppError::bad_input(
                    "tenantIds",
                    format!("tenant {twice} is named twice"),
                )]);
            }
            let found = tenants::Entity::find()
                .filter(tenants::Column::Id.is_in(ids.clone()))
                .filter(tenants::Column::DeletedAt.is_null())
                .all(&state.db)
                .await
                .map_err(|e| vec![e.into()])?;
            let mut by_id: HashMap<Uuid, tenants::Model> = found
                .into_iter()
                .map(|tenant| (tenant.id, tenant))
                .collect();
            let unknown: Vec<AppError> = ids
                .iter()
                .filter(|id| !by_id.contains_key(id))
                .map(|id| AppError::not_found(format!("no tenant with id {id}")))
                .collect();
            if !unknown.is_empty() {
                return Err(unknown);
            }
            Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
        }
        TenantSelection::Filter(query) => {
            let page = registry::list(&state.db, &query, None, limit, false)
                .await
                .map_err(|e| vec![e])?;
            if page.has_next_page {
                return Err(vec![AppError::bad_input(
                    "filter",
                    format!(
                        "more than {limit} tenants match (MAX_TENANTS_PER_BATCH): narrow the filter or name the tenants"
                    ),
                )]);
            }
            Ok(page.tenants)
        }
    }
}

/// Records the batch under its lock, taken first so that no other server takes it over before
/// its run starts here, and starts the run.
async fn start(
    state: &SharedState,
    actor: &Actor,
    kind: BatchKind,
    target_revision: Option<String>,
    options: BatchOptions,
    jobs: Vec<provisioning_jobs::ActiveModel>,
) -> AppResult<BatchReport> {
    let batch_id = Uuid::new_v4();
    tracing::Span::current().record("batch_id", tracing::field::display(batch_id));
    let lock = BatchLock::try_acquire(state, batch_id)
        .await
        .context("taking a new batch's lock")
        .map_err(AppError::internal)?
        .context("a new batch's lock is held")
        .map_err(AppError::internal)?;
    let batch = record_batch(
        state,
        actor,
        batch_id,
        kind,
        target_revision,
        &options,
        jobs,
    )
    .await?;
    let runner = runner::Runner::new(state.clone(), actor.clone(), &batch)?;
    finish_or_detach(
        state,
        batch.id,
        options.wait,
        state.batches.run(runner.run(lock)),
    )
    .await
}

/// A stored batch and its jobs in order.
pub async fn load(state: &SharedState, batch_id: Uuid) -> AppResult<Option<BatchReport>> {
    let Some(batch) = provisioning_batches::Entity::find_by_id(batch_id)
        .one(&state.db)
        .await?
    else {
        return Ok(None);
    };
    Ok(with_jobs(state, vec![batch]).await?.pop())
}

/// The latest `limit` batches, newest first, only those in `status` if given, each with its jobs
/// in order.
pub async fn recent(
    state: &SharedState,
    limit: u64,
    status: Option<BatchStatus>,
) -> AppResult<Vec<BatchReport>> {
    let mut query = provisioning_batches::Entity::find()
        .order_by_desc(provisioning_batches::Column::CreatedAt)
        .order_by_desc(provisioning_batches::Column::Id);
    if let Some(status) = status {
        query = query.filter(provisioning_batches::Column::Status.eq(status));
    }
    let batches = query.limit(limit).all(&state.db).await?;
    with_jobs(state, batches).await
}

/// `batches` with their jobs, read in one query for all of them.
async fn with_jobs(
    state: &SharedState,
    batches: Vec<provisioning_batches::Model>,
) -> AppResult<Vec<BatchReport>> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let mut jobs_by_batch: HashMap<Uuid, Vec<provisioning_jobs::Model>> = HashMap::new();
    let jobs = provisioning_jobs::Entity::find()
        .filter(provisioning_jobs::Column::BatchId.is_in(batches.iter().map(|batch| batch.id)))
        .order_by_asc(provisioning_jobs::Column::Position)
        .all(&state.db)
        .await?;
    let servers: HashMap<Uuid, String> = tenants::Entity::find()
        .select_only()
        .column(tenants::Column::Id)
        .column(tenants::Column::ServerName)
        .filter(tenants::Column::Id.is_in(jobs.iter().filter_map(|job| job.tenant_id)))
        .into_tuple::<(Uuid, Option<String>)>()
        .all(&state.db)
        .await?
        .into_iter()
        .map(|(id, server)| (id, server.unwrap_or_else(|| CONTROL_SERVER.to_owned())))
        .collect();
    for job in jobs {
        jobs_by_batch.entry(job.batch_id).or_default().push(job);
    }
    Ok(batches
        .into_iter()
        .map(|batch| BatchReport {
            jobs: jobs_by_batch.remove(&batch.id).unwrap_or_default(),
            batch,
            api_keys: HashMap::new(),
            servers: servers.clone(),
            running: None,
        })
        .collect())
}

fn check_batch_size(state: &SharedState, field: &str, size: usize) -> AppResult<()> {
    let limit = state.config.max_tenants_per_batch as usize;
    if size == 0 || size > limit {
        return Err(AppError::bad_input(
            field,
            format!(
                "a batch holds 1 to {limit} tenants (MAX_TENANTS_PER_BATCH); this one has {size}"
            ),
        ));
    }
    Ok(())
}

/// Checks the options and caps concurrency by configuration and by the pool, which must keep
/// connections for requests.
fn effective(state: &SharedState, mut options: BatchOptions) -> AppResult<BatchOptions> {
    if options.max_concurrency == 0 {
        return Err(AppError::bad_input(
            "options.maxConcurrency",
            "must be at least 1",
        ));
    }
    if options.retry_attempts > 10 {
        return Err(AppError::bad_input("options.retryAttempts", "at most 10"));
    }
    if !(1..=3600).contains(&options.timeout_seconds) {
        return Err(AppError::bad_input(
            "options.timeoutSeconds",
            "1 to 3600 seconds",
        ));
    }
    let pool_share = state
        .config
        .database_max_connections
        .saturating_sub(2)
        .max(1);
    options.max_concurrency = options
        .max_concurrency
        .min(state.config.max_concurrent_operations)
        .min(pool_share);
    Ok(options)
}

fn new_job(
    position: usize,
    tenant_name: &str,
    domain: &str,
    schema_name: Option<String>,
    tenant_id: Option<Uuid>,
) -> provisioning_jobs::ActiveModel {
    // Names are shown back to operators; keep what bad input can put there bounded.
    let bounded = |text: &str| text.chars().take(253).collect::<String>();
    provisioning_jobs::ActiveModel {
        id: Set(Uuid::new_v4()),
        position: Set(position as i32),
        tenant_name: Set(bounded(tenant_name)),
        domain: Set(bounded(domain)),
        schema_name: Set(schema_name),
        tenant_id: Set(tenant_id),
        status: Set(JobStatus::Pending),
        attempts: Set(0),
        ..Default::default()
    }
}

/// One job a registered tenant, in order, each with the input `input` gives it.
fn jobs_of(
    tenants: &[tenants::Model],
    input: impl Fn(&tenants::Model) -> JobInput,
) -> Vec<provisioning_jobs::ActiveModel> {
    tenants
        .iter()
        .enumerate()
        .map(|(position, tenant)| {
            let mut job = new_job(
                position,
                &tenant.tenant_name,
                &tenant.domain,
                Some(tenant.schema_name.clone()),
                Some(tenant.id),
            );
            let input = serde_json::to_value(input(tenant)).expect("inputs serialise");
            job.input = Set(Some(input));
            job
        })
        .collect()
}

/// Writes the batch and all its jobs in one transaction, before any work starts.
async fn record_batch(
    state: &SharedState,
    actor: &Actor,
    batch_id: Uuid,
    kind: BatchKind,
    target_revision: Option<String>,
    options: &BatchOptions,
    jobs: Vec<provisioning_jobs::ActiveModel>,
) -> AppResult<provisioning_batches::Model> {
    let txn = state.db.begin().await?;
    let batch = provisioning_batches::Entity::insert(provisioning_batches::ActiveModel {
        id: Set(batch_id),
        kind: Set(kind),
        status: Set(BatchStatus::Pending),
        options: Set(serde_json::to_value(options).expect("options serialise")),
        target_revision: Set(target_revision),
        total: Set(jobs.len() as i32),
        created_by: Set(actor.id.clone()),
        created_at: Set(Utc::now().fixed_offset()),
        ..Default::default()
    })
    .exec_with_returning(&txn)
    .await?;
    let total = jobs.len();
    for mut job in jobs {
        job.batch_id = Set(batch_id);
        provisioning_jobs::Entity::insert(job)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    crate::audit::record(
        &state.db,
        actor,
        &format!("batch.{}", <&str>::from(kind).to_lowercase()),
        None,
        crate::audit::Outcome::Success,
        serde_json::json!({ "batchId": batch_id, "total": total }),
    )
    .await;
    Ok(batch)
}

/// Runs the batch in a task of its own; with `wait` the caller gets the finished batch,
/// otherwise the batch as it is once started.
async fn finish_or_detach(
    state: &SharedState,
    batch_id: Uuid,
    wait: bool,
    work: tokio::task::JoinHandle<HashMap<Uuid, String>>,
) -> AppResult<BatchReport> {
    let task = work;
    if !wait {
        let mut report = load(state, batch_id)
            .await?
            .expect("the batch was just written");
        // The task marks it RUNNING in a moment; say so now rather than PENDING.
        report.batch.status = BatchStatus::Running;
        report.running = Some(task);
        return Ok(report);
    }
    let api_keys = task
        .await
        .context("the batch task failed")
        .map_err(AppError::internal)?;
    let mut report = load(state, batch_id)
        .await?
        .expect("the batch was just written");
    report.api_keys = api_keys;
    Ok(report)
}

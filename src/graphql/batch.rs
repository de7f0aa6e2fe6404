//! Batch provisioning, fleet migrations, bulk updates and their live progress (platform
//! operators only).

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject, Subscription};
use chrono::{DateTime, FixedOffset, Utc};
use futures_util::{Stream, StreamExt};
use uuid::Uuid;

use crate::{
    audit::Actor,
    batch::{self, BatchOptions, BatchReport, TenantSelection, events::ProgressEvent},
    config::Config,
    error::AppError,
    graphql::{
        ContextExt, MAX_PAGE_SIZE, all_errors, parse_id,
        tenants::{CreateTenantInput, TenantFilter, UpdateTenantInput},
    },
    tenancy::{admin::TenantPatch, guard, migrator::Target, validation::TenantDraft},
};

#[derive(InputObject, Debug, Clone)]
#[graphql(name = "BatchOptions")]
pub struct BatchOptionsInput {
    /// Tenants worked on at once; capped by MAX_CONCURRENT_OPERATIONS and the pool.
    #[graphql(default = 5)]
    pub max_concurrency: i32,
    /// All or nothing: when any tenant fails, everything the batch made is undone.
    #[graphql(default = false)]
    pub atomic: bool,
    /// Further attempts after a transient failure (never after bad input or a conflict); by
    /// default `RETRY_ATTEMPTS` (2).
    pub retry_attempts: Option<i32>,
    /// Limit per tenant; by default `OPERATION_TIMEOUT_SECONDS` (60).
    pub timeout_seconds: Option<i32>,
    /// Answer with the finished batch (and the new API keys) instead of at once.
    #[graphql(default = false)]
    pub wait: bool,
}

impl Default for BatchOptionsInput {
    fn default() -> Self {
        BatchOptionsInput {
            max_concurrency: 5,
            atomic: false,
            retry_attempts: None,
            timeout_seconds: None,
            wait: false,
        }
    }
}

impl BatchOptionsInput {
    /// The options asked for, the configured defaults filling what was left out.
    fn into_options(self, config: &Config) -> Result<BatchOptions, AppError> {
        let non_negative = |field: &str, value: i32| {
            u32::try_from(value).map_err(|_| {
                AppError::bad_input(format!("options.{field}"), "must not be negative")
            })
        };
        Ok(BatchOptions {
            max_concurrency: non_negative("maxConcurrency", self.max_concurrency)?,
            atomic: self.atomic,
            retry_attempts: match self.retry_attempts {
                Some(value) => non_negative("retryAttempts", value)?,
                None => config.retry_attempts,
            },
            timeout_seconds: match self.timeout_seconds {
                Some(value) => non_negative("timeoutSeconds", value)?,
                None => u32::try_from(config.operation_timeout.as_secs()).unwrap_or(u32::MAX),
            },
            wait: self.wait,
        })
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::batch::BatchKind")]
pub enum BatchKind {
    Provision,
    Migrate,
    Update,
    Move,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::batch::BatchStatus")]
pub enum BatchStatus {
    Pending,
    Running,
    Succeeded,
    PartiallyFailed,
    Failed,
    RolledBack,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::batch::JobStatus", name = "ProvisioningResultStatus")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    RolledBack,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::tenancy::Step", name = "ProvisioningStep")]
pub enum ProvisioningStep {
    Validate,
    CreateSchema,
    Migrate,
    Seed,
    Register,
    ApiKey,
    Verify,
    Rollback,
    Done,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::tenancy::StepStatus", name = "ProvisioningStepStatus")]
pub enum ProvisioningStepStatus {
    Started,
    Succeeded,
    Failed,
    Retrying,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct BatchError {
    pub code: String,
    pub message: String,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ProvisioningResult {
    pub tenant_name: String,
    pub domain: String,
    pub schema_name: Option<String>,
    pub status: JobStatus,
    pub tenant_id: Option<ID>,
    /// Only in the response of `provisionTenants(options: {wait: true})`; never stored.
    pub api_key: Option<String>,
    pub error: Option<BatchError>,
    /// Attempts made, an attempt interrupted by a stopped server included.
    pub attempts: i32,
    /// The tenant's job was interrupted by a stopped server and resumed (undone if half made,
    /// then run again) by the next one.
    pub resumed: bool,
    pub duration_ms: Option<i64>,
    /// The database server the tenant lives on (`control`: the control database); null while
    /// it has no registry entry.
    pub server: Option<String>,
}

/// How a batch went on one database server.
#[derive(SimpleObject, Debug, Clone)]
pub struct ServerBatchSummary {
    pub server: String,
    pub successful: i32,
    pub failed: i32,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct BatchSummary {
    pub total_requested: i32,
    pub successful: i32,
    pub failed: i32,
    pub processing_time_ms: Option<i64>,
    /// Per database server, by name, of the tenants placed so far.
    pub by_server: Vec<ServerBatchSummary>,
    /// For a move: how long the tenant's writes were held while it switched servers, in
    /// milliseconds (once it switched).
    pub write_pause_ms: Option<i64>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ProvisioningBatch {
    pub id: ID,
    pub kind: BatchKind,
    pub status: BatchStatus,
    /// For fleet migrations: the revision asked for.
    pub target_revision: Option<String>,
    pub results: Vec<ProvisioningResult>,
    pub summary: BatchSummary,
    pub created_at: DateTime<FixedOffset>,
    pub finished_at: Option<DateTime<FixedOffset>>,
}

impl From<BatchReport> for ProvisioningBatch {
    fn from(report: BatchReport) -> Self {
        let batch = report.batch;
        let write_pause_ms = report.jobs.iter().find_map(batch::write_pause_ms);
        let results: Vec<ProvisioningResult> = report
            .jobs
            .into_iter()
            .map(|job| ProvisioningResult {
                server: job
                    .tenant_id
                    .and_then(|id| report.servers.get(&id).cloned()),
                api_key: report.api_keys.get(&job.id).cloned(),
                tenant_name: job.tenant_name,
                domain: job.domain,
                schema_name: job.schema_name,
                status: job.status.into(),
                tenant_id: job.tenant_id.map(|id| ID(id.to_string())),
                error: job.error_message.map(|message| BatchError {
                    code: job.error_code.unwrap_or_else(|| "INTERNAL".into()),
                    message,
                }),
                attempts: job.attempts,
                resumed: job.resumed,
                duration_ms: job.duration_ms,
            })
            .collect();
        let processing_time_ms = match (batch.started_at, batch.finished_at) {
            (Some(started), Some(finished)) => Some((finished - started).num_milliseconds()),
            _ => None,
        };
        // (successful, failed) per server, by name.
        let mut counts: std::collections::BTreeMap<&str, (i32, i32)> = Default::default();
        for result in &results {
            if let Some(server) = &result.server {
                let count = counts.entry(server).or_default();
                match result.status {
                    JobStatus::Succeeded => count.0 += 1,
                    JobStatus::Failed => count.1 += 1,
                    _ => {}
                }
            }
        }
        let by_server = counts
            .into_iter()
            .map(|(server, (successful, failed))| ServerBatchSummary {
                server: server.to_owned(),
                successful,
                failed,
            })
            .collect();
        ProvisioningBatch {
            id: ID(batch.id.to_string()),
            kind: batch.kind.into(),
            status: batch.status.into(),
            target_revision: batch.target_revision,
            results,
            summary: BatchSummary {
                total_requested: batch.total,
                successful: batch.successful,
                failed: batch.failed,
                processing_time_ms,
                by_server,
                write_pause_ms,
            },
            created_at: batch.created_at,
            finished_at: batch.finished_at,
        }
    }
}

/// One step of one tenant of a batch; with no tenant, the end of the batch.
#[derive(SimpleObject, Debug, Clone)]
pub struct ProvisioningEvent {
    pub batch_id: ID,
    /// Position in the batch's event log.
    pub seq: i32,
    pub tenant_name: Option<String>,
    pub schema_name: Option<String>,
    pub step: ProvisioningStep,
    pub status: ProvisioningStepStatus,
    pub message: Option<String>,
    pub completed: i32,
    pub total: i32,
    pub at: DateTime<Utc>,
}

impl From<ProgressEvent> for ProvisioningEvent {
    fn from(event: ProgressEvent) -> Self {
        ProvisioningEvent {
            batch_id: ID(event.batch_id.to_string()),
            seq: event.seq,
            tenant_name: event.tenant_name,
            schema_name: event.schema_name,
            step: event.step.into(),
            status: event.status.into(),
            message: event.message,
            completed: event.completed,
            total: event.total,
            at: event.at,
        }
    }
}

#[derive(Default)]
pub struct BatchQuery;

#[Object]
impl BatchQuery {
    /// A batch with every tenant's result (never API keys).
    async fn provisioning_batch(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ProvisioningBatch>> {
        ctx.request().require_platform()?;
        let id = parse_id("id", &id)?;
        Ok(batch::load(ctx.state(), id).await?.map(Into::into))
    }

    /// The latest batches, newest first, whoever started them; only those in `status` if given.
    /// `first` is clamped to 1 to 100.
    #[graphql(complexity = "crate::graphql::page_cost(first, 20, child_complexity)")]
    async fn provisioning_batches(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        status: Option<BatchStatus>,
    ) -> async_graphql::Result<Vec<ProvisioningBatch>> {
        ctx.request().require_platform()?;
        let limit = first.unwrap_or(20).clamp(1, MAX_PAGE_SIZE) as u64;
        let batches = batch::recent(ctx.state(), limit, status.map(Into::into)).await?;
        Ok(batches.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
pub struct BatchMutation;

#[Object]
impl BatchMutation {
    /// Provisions many tenants: bounded parallelism, per-tenant time-outs and retries, failures
    /// kept to their tenant (or all undone with `atomic`).
    async fn provision_tenants(
        &self,
        ctx: &Context<'_>,
        tenants: Vec<CreateTenantInput>,
        options: Option<BatchOptionsInput>,
    ) -> async_graphql::Result<ProvisioningBatch> {
        let request = ctx.request();
        request.require_platform()?;
        let options = options
            .unwrap_or_default()
            .into_options(&ctx.state().config)?;
        let drafts = tenants.into_iter().map(TenantDraft::from).collect();
        let report =
            batch::provision_tenants(ctx.state(), &Actor::from(request), drafts, options).await?;
        Ok(report.into())
    }

    /// Migrates tenants (the given ones, or every tenant behind the target) up or down to
    /// `targetRevision`, each in one transaction: a tenant that fails stays where it started.
    /// Either way at most `MAX_TENANTS_PER_BATCH` tenants; a target below head needs `confirm`
    /// equal to `targetRevision`.
    async fn migrate_tenants(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "String::from(\"head\")")] target_revision: String,
        tenant_ids: Option<Vec<ID>>,
        options: Option<BatchOptionsInput>,
        confirm: Option<String>,
    ) -> async_graphql::Result<ProvisioningBatch> {
        let request = ctx.request();
        request.require_platform()?;
        let target = Target::parse("targetRevision", &target_revision)?;
        guard::confirm_fleet_migration(&target, &target_revision, confirm.as_deref())?;
        let tenant_ids = tenant_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| parse_id("tenantIds", id))
                    .collect::<Result<Vec<Uuid>, _>>()
            })
            .transpose()
            .map_err(|e| all_errors(ctx, vec![e]))?;
        let options = options
            .unwrap_or_default()
            .into_options(&ctx.state().config)?;
        let report = batch::migrate_tenants(
            ctx.state(),
            &Actor::from(request),
            target,
            tenant_ids,
            options,
        )
        .await?;
        Ok(report.into())
    }

    /// Moves a tenant online to another database server, as a batch of one job: its schema is
    /// made there at the same revision and filled by logical replication; once caught up, its
    /// writes are held for a moment (reported as `summary.writePauseMs`), the row counts
    /// compared, and the tenant switched; the source copy is dropped last. A failure or a crash
    /// before the switch leaves the tenant working on its server. Both servers need
    /// `wal_level=logical`.
    async fn move_tenant(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        to_server: String,
        options: Option<BatchOptionsInput>,
    ) -> async_graphql::Result<ProvisioningBatch> {
        let request = ctx.request();
        request.require_platform()?;
        let tenant_id = parse_id("tenantId", &tenant_id)?;
        let options = options
            .unwrap_or_default()
            .into_options(&ctx.state().config)?;
        let report = batch::move_tenant(
            ctx.state(),
            &Actor::from(request),
            tenant_id,
            &to_server,
            options,
        )
        .await?;
        Ok(report.into())
    }

    /// Applies one change to many tenants: those of `tenantIds` or those `filter` matches (one
    /// or the other), at most `MAX_TENANTS_PER_BATCH`. The change is what `updateTenant` makes
    /// of `input`, for each tenant, except for the fields that belong to one tenant (its name,
    /// domain and contact details), which are refused. With `atomic`, every tenant's change is
    /// undone when any tenant fails.
    async fn update_tenants(
        &self,
        ctx: &Context<'_>,
        tenant_ids: Option<Vec<ID>>,
        filter: Option<TenantFilter>,
        input: UpdateTenantInput,
        options: Option<BatchOptionsInput>,
    ) -> async_graphql::Result<ProvisioningBatch> {
        let request = ctx.request();
        request.require_platform()?;
        let selection = match (tenant_ids, filter) {
            (Some(ids), None) => TenantSelection::Ids(
                ids.iter()
                    .map(|id| parse_id("tenantIds", id))
                    .collect::<Result<_, _>>()?,
            ),
            (None, Some(filter)) => TenantSelection::Filter(filter.into()),
            (Some(_), Some(_)) => {
                return Err(
                    AppError::bad_input("filter", "give tenantIds or filter, not both").into(),
                );
            }
            (None, None) => {
                return Err(AppError::bad_input("tenantIds", "give tenantIds or filter").into());
            }
        };
        let patch = TenantPatch::try_from(input)?;
        let options = options
            .unwrap_or_default()
            .into_options(&ctx.state().config)?;
        let report = batch::update_tenants(
            ctx.state(),
            &Actor::from(request),
            selection,
            patch,
            options,
        )
        .await
        .map_err(|errors| all_errors(ctx, errors))?;
        Ok(report.into())
    }
}

#[derive(Default)]
pub struct BatchSubscription;

#[Subscription]
impl BatchSubscription {
    /// Every step of every tenant of the batch: first everything so far, then live, ending
    /// when the batch ends.
    async fn provisioning_progress(
        &self,
        ctx: &Context<'_>,
        batch_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = ProvisioningEvent> + use<>> {
        ctx.request().require_platform()?;
        let batch_id = parse_id("batchId", &batch_id)?;
        let state = ctx.state().clone();
        if batch::load(&state, batch_id).await?.is_none() {
            return Err(AppError::not_found("no such batch").into());
        }
        Ok(batch::progress::follow(state, batch_id).map(ProvisioningEvent::from))
    }
}

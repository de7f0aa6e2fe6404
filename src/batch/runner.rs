//! Running a batch: bounded parallelism, a timeout and retries per tenant, isolated failures,
//! all-or-nothing on request, and a progress event for every step.
//!
//! A run works from what is stored, so the same code starts a new batch and resumes one that a
//! stopped server left: a job that had not started starts; a job that was half-way is undone
//! and run again within the retry budget (the interrupted attempt counts); a job whose work had
//! committed is recorded as succeeded. A draining server starts no further jobs and leaves the
//! batch unfinished for the next server.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use entity::public::{provisioning_batches, provisioning_jobs, tenants};
use futures_util::{StreamExt, stream};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QueryTrait,
    sea_query::{Expr, PostgresQueryBuilder},
};
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Outcome},
    batch::{
        BatchKind, BatchOptions, BatchStatus, JobInput, JobStatus, describe,
        events::ProgressEvent,
        lock::{BatchLock, HeldLock},
    },
    db::pinned::update_by_key,
    error::{AppError, AppResult},
    state::SharedState,
    tenancy::{
        Progress, Step, StepStatus, TenantStatus,
        admin::{self, TenantPatch, Undo},
        migrate::{self, MigrationMode},
        migrator::Target,
        moves,
        provision::{self, ProvisionOptions},
        registry::find_live,
        validation::validate_new_tenant,
    },
};

/// Pause before the first retry; it doubles with each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

const INTERRUPTED: &str = "interrupted: the server running the batch stopped";

pub struct Runner {
    state: SharedState,
    actor: Actor,
    batch_id: Uuid,
    kind: BatchKind,
    total: i32,
    options: BatchOptions,
    /// Where a fleet migration goes.
    target: Target,
    /// Set when an atomic batch has a failure: tenants not yet started are skipped.
    abandoned: AtomicBool,
    /// Set when the connection holding the batch's lock broke: another server may take the
    /// batch over, so this one starts nothing more and leaves the batch unfinished.
    lock_lost: Arc<AtomicBool>,
}

/// How one job ended.
struct JobEnd {
    job_id: Uuid,
    error: Option<AppError>,
    api_key: Option<String>,
}

impl Runner {
    /// The runner of a stored batch.
    pub fn new(
        state: SharedState,
        actor: Actor,
        batch: &provisioning_batches::Model,
    ) -> AppResult<Arc<Self>> {
        let options: BatchOptions = serde_json::from_value(batch.options.clone())
            .map_err(|err| AppError::internal(anyhow::anyhow!("a batch's options: {err}")))?;
        let target = match batch.target_revision.as_deref() {
            None | Some("head") => Target::Head,
            Some("base") => Target::Base,
            Some(revision) => Target::Revision(revision.to_owned()),
        };
        Ok(Arc::new(Runner {
            state,
            actor,
            batch_id: batch.id,
            kind: batch.kind,
            total: batch.total,
            options,
            target,
            abandoned: AtomicBool::new(false),
            lock_lost: Arc::default(),
        }))
    }

    /// Runs (or resumes) the batch under its `lock`; returns the new tenants' API keys by job,
    /// for the jobs this run provisioned.
    #[tracing::instrument(name = "batch", skip_all, fields(batch_id = %self.batch_id, kind = <&str>::from(self.kind)))]
    pub async fn run(self: Arc<Self>, lock: BatchLock) -> HashMap<Uuid, String> {
        let lock = lock.hold(self.lock_lost.clone());
        let jobs = match self.begin().await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::error!(batch = %self.batch_id, error = ?err, "could not start the batch; it is left for another try");
                self.state.events.close(self.batch_id).await;
                lock.release().await;
                return HashMap::new();
            }
        };
        let atomic_failure = jobs.iter().any(|job| {
            job.status == JobStatus::Failed
                || (job.status == JobStatus::Pending && job.error_code.is_some())
        });
        if self.options.atomic && atomic_failure {
            self.abandoned.store(true, Ordering::SeqCst);
        }
        let unfinished: Vec<_> = jobs
            .into_iter()
            .filter(|job| !job.status.is_finished())
            .collect();
        let concurrency = self.options.max_concurrency as usize;
        let this = &self;
        let ends: Vec<Option<JobEnd>> = stream::iter(unfinished)
            .map(|job| this.run_job(job))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let left = ends.iter().any(Option::is_none);
        let ends: Vec<JobEnd> = ends.into_iter().flatten().collect();
        let undone = if left {
            tracing::info!(batch = %self.batch_id, "the batch's remaining tenants are left for the next server");
            self.state.events.close(self.batch_id).await;
            lock.release().await;
            HashSet::new()
        } else {
            self.finish(&ends, lock).await
        };
        // The key of a tenant that was undone again opens nothing: not shown.
        ends.into_iter()
            .filter(|end| !undone.contains(&end.job_id))
            .filter_map(|end| end.api_key.map(|key| (end.job_id, key)))
            .collect()
    }

    /// Marks the batch running and opens its event log; the jobs as stored.
    async fn begin(&self) -> AppResult<Vec<provisioning_jobs::Model>> {
        self.state.events.open(self.batch_id).await?;
        let batch = provisioning_batches::Entity::find_by_id(self.batch_id)
            .one(&self.state.db)
            .await?
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("the batch is gone")))?;
        provisioning_batches::Entity::update(provisioning_batches::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(self.batch_id),
            status: Set(BatchStatus::Running),
            started_at: Set(Some(
                batch
                    .started_at
                    .unwrap_or_else(|| Utc::now().fixed_offset()),
            )),
            ..Default::default()
        })
        .exec(&self.state.db)
        .await?;
        Ok(self.jobs().await?)
    }

    async fn jobs(&self) -> Result<Vec<provisioning_jobs::Model>, sea_orm::DbErr> {
        provisioning_jobs::Entity::find()
            .filter(provisioning_jobs::Column::BatchId.eq(self.batch_id))
            .order_by_asc(provisioning_jobs::Column::Position)
            .all(&self.state.db)
            .await
    }

    /// One unfinished job; `None` when it is left for the next server (this one is stopping).
    #[tracing::instrument(
        name = "batch job",
        skip_all,
        fields(position = job.position, tenant_id = tracing::field::Empty, schema = job.schema_name.as_deref().unwrap_or(""))
    )]
    async fn run_job(&self, job: provisioning_jobs::Model) -> Option<JobEnd> {
        if self.state.batches.is_draining() || self.lock_lost.load(Ordering::SeqCst) {
            return None;
        }
        if self.abandoned.load(Ordering::SeqCst) {
            return Some(self.skip(&job).await);
        }
        if let Some(code) = &job.error_code {
            // Refused when the batch was submitted.
            let error = refused(code, job.error_message.clone().unwrap_or_default());
            return Some(self.end_without_work(&job, Step::Validate, error).await);
        }
        let input = stored_input(&job);
        let interrupted = job.status == JobStatus::Running;
        // Recorded with the job's start; a retry records its own.
        let first_attempt = job.attempts as u32 + 1;
        let started = Instant::now();
        let tenant_id = job.tenant_id.unwrap_or_else(Uuid::new_v4);
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant_id));
        if interrupted {
            match self.undo_interrupted(&job, tenant_id).await {
                Ok(true) => {
                    return Some(
                        self.job_finished(&job, Some(tenant_id), started, None, true)
                            .await,
                    );
                }
                Ok(false) => {}
                Err(error) => {
                    return Some(
                        self.job_finished(&job, job.tenant_id, started, Some(error), true)
                            .await,
                    );
                }
            }
            if job.attempts as u32 > self.options.retry_attempts {
                let error = AppError::Failed {
                    step: Step::Done.name(),
                    transient: true,
                    reference: None,
                    message: format!("{INTERRUPTED}, and no attempts were left"),
                };
                let tenant = (self.kind != BatchKind::Provision).then_some(tenant_id);
                return Some(
                    self.job_finished(&job, tenant, started, Some(error), true)
                        .await,
                );
            }
            self.event(
                &job,
                self.retry_step(),
                StepStatus::Retrying,
                Some(&format!("{INTERRUPTED}; running it again")),
            );
            self.update_job(job.id, |row| {
                row.resumed = Set(true);
                row.attempts = Set(first_attempt as i32);
            })
            .await;
        } else {
            if self.kind == BatchKind::Provision {
                self.event(&job, Step::Validate, StepStatus::Started, None);
                self.event(&job, Step::Validate, StepStatus::Succeeded, None);
            }
            self.update_job(job.id, |row| {
                row.status = Set(JobStatus::Running);
                row.tenant_id = Set(Some(tenant_id));
                row.started_at = Set(Some(Utc::now().fixed_offset()));
                row.attempts = Set(first_attempt as i32);
            })
            .await;
        }
        Some(match (self.kind, input) {
            (
                BatchKind::Provision,
                Some(JobInput::Provision {
                    tenant,
                    admin,
                    roles,
                }),
            ) => {
                let seed = Seed { admin, roles };
                self.provision_one(&job, tenant_id, tenant, seed, first_attempt, interrupted)
                    .await
            }
            (BatchKind::Migrate, Some(JobInput::Migrate { .. })) => {
                self.migrate_one(&job, tenant_id, first_attempt, interrupted)
                    .await
            }
            (BatchKind::Update, Some(JobInput::Update { patch, .. })) => {
                self.update_one(&job, tenant_id, *patch, first_attempt, interrupted)
                    .await
            }
            (
                BatchKind::Move,
                Some(JobInput::Move {
                    from_server,
                    to_server,
                    ..
                }),
            ) => {
                let servers = (from_server.as_str(), to_server.as_str());
                self.move_one(&job, tenant_id, servers, first_attempt, interrupted)
                    .await
            }
            _ => {
                // A job recorded by a version that did not store inputs cannot be run again.
                let error = AppError::Failed {
                    step: Step::Done.name(),
                    transient: false,
                    reference: None,
                    message: format!(
                        "{INTERRUPTED}; this tenant was submitted without what resuming needs: submit it again"
                    ),
                };
                self.job_finished(&job, None, started, Some(error), interrupted)
                    .await
            }
        })
    }

    /// Undoes what an interrupted attempt left half made. `true`: it had in fact finished (its
    /// work committed before the server stopped), so there is nothing to run again.
    async fn undo_interrupted(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Uuid,
    ) -> AppResult<bool> {
        // A fleet migration moves each tenant in one transaction with its registry record, so
        // an interrupted one rolled back; running it again goes on from where the schema is. A
        // move resumed rolls itself back or finishes, as the registry says (`moves::run`).
        if matches!(self.kind, BatchKind::Migrate | BatchKind::Move) {
            return Ok(false);
        }
        // An update's change commits with its undo, in one transaction: a job that has its undo
        // is done, one without it changed nothing.
        if self.kind == BatchKind::Update {
            return Ok(update_noted(job));
        }
        let Some(tenant) = tenants::Entity::find_by_id(tenant_id)
            .one(&self.state.db)
            .await?
        else {
            return Ok(false);
        };
        match tenant.status {
            TenantStatus::Active => Ok(true),
            TenantStatus::Failed if !self.state.config.enable_rollback => Err(AppError::Failed {
                step: Step::Done.name(),
                transient: false,
                reference: None,
                message: format!(
                    "{INTERRUPTED}; the tenant is marked FAILED and kept for inspection: {}",
                    tenant.failure_reason.unwrap_or_default()
                ),
            }),
            _ => {
                // Half made: the schema (if any) and the registry row go.
                self.event(job, Step::Rollback, StepStatus::Started, None);
                match admin::delete(&self.state, &self.actor, tenant.id, true).await {
                    Ok(_) | Err(AppError::NotFound(_)) => {}
                    Err(err) => return Err(err),
                }
                self.event(job, Step::Rollback, StepStatus::Succeeded, None);
                Ok(false)
            }
        }
    }

    async fn provision_one(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Uuid,
        draft: Box<crate::tenancy::validation::TenantDraft>,
        seed: Seed,
        mut attempt: u32,
        resumed: bool,
    ) -> JobEnd {
        let started = Instant::now();
        let valid = match validate_new_tenant(&draft, &self.state.config.tenant_schema_prefix) {
            Ok(valid) => valid,
            Err(mut faults) => {
                let error = faults.remove(0);
                return self
                    .job_finished(job, None, started, Some(error), resumed)
                    .await;
            }
        };
        loop {
            let options = ProvisionOptions {
                provision_schema: true,
                run_migrations: true,
                timeout: self.timeout(),
                progress: self.progress_of(job),
                tenant_id: Some(tenant_id),
                admin: seed.admin.clone(),
                roles: seed.roles.clone(),
                clone_from: None,
            };
            match provision::create(&self.state, &self.actor, valid.clone(), options).await {
                Ok(created) => {
                    let mut end = self
                        .job_finished(job, Some(created.tenant.id), started, None, resumed)
                        .await;
                    // Only a waiting caller of this run can be shown the key, once.
                    end.api_key = (!resumed).then_some(created.api_key);
                    return end;
                }
                Err(error) if error.is_transient() && attempt <= self.options.retry_attempts => {
                    self.retry_after(job, attempt, &error).await;
                }
                Err(error) => {
                    return self
                        .job_finished(job, None, started, Some(error), resumed)
                        .await;
                }
            }
            attempt += 1;
        }
    }

    async fn migrate_one(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Uuid,
        attempt: u32,
        resumed: bool,
    ) -> JobEnd {
        let tenant = match find_live(&self.state.db, tenant_id).await {
            Ok(tenant) => tenant,
            Err(error) => {
                return self
                    .job_finished(job, Some(tenant_id), Instant::now(), Some(error), resumed)
                    .await;
            }
        };
        // The first attempt migrates the tenant as just read; a retry reads it again.
        let just_read = std::sync::Mutex::new(Some(tenant));
        let migrate = || async {
            let known = just_read.lock().expect("not poisoned").take();
            let tenant = match known {
                Some(tenant) => tenant,
                None => find_live(&self.state.db, tenant_id).await?,
            };
            let (_, reached) = tokio::time::timeout(
                self.timeout(),
                migrate::migrate_tenant(
                    &self.state,
                    &self.actor,
                    tenant,
                    self.target.clone(),
                    MigrationMode::Whole,
                ),
            )
            .await
            .unwrap_or_else(|_| Err(AppError::Timeout("the migration took too long".into())))?;
            Ok(Some(
                reached.current_revision().unwrap_or("base").to_owned(),
            ))
        };
        self.run_step(job, tenant_id, Step::Migrate, attempt, resumed, migrate)
            .await
    }

    /// Applies the update to one tenant, noting with the change how to take it back.
    async fn update_one(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Uuid,
        patch: TenantPatch,
        attempt: u32,
        resumed: bool,
    ) -> JobEnd {
        let update = || async {
            let noted = patch.clone();
            let note = |undo: &Undo| {
                let input = JobInput::Update {
                    patch: Box::new(noted),
                    undo: Some(undo.clone()),
                };
                // The first undo stays: an attempt that timed out after its commit left it, and
                // a second one would note the changed tenant as the one to go back to.
                Some(
                    provisioning_jobs::Entity::update_many()
                        .col_expr(
                            provisioning_jobs::Column::Input,
                            Expr::value(serde_json::to_value(input).expect("inputs serialise")),
                        )
                        .filter(provisioning_jobs::Column::Id.eq(job.id))
                        .filter(Expr::cust("input->'undo' IS NULL"))
                        .build(DbBackend::Postgres),
                )
            };
            let updated = tokio::time::timeout(
                self.timeout(),
                admin::update_noting(&self.state, &self.actor, tenant_id, patch.clone(), note),
            )
            .await
            .unwrap_or_else(|_| Err(vec![AppError::Timeout("the update took too long".into())]));
            match updated {
                Ok(_) => Ok(None),
                // Timed out after its commit: the change is made.
                Err(_) if self.update_committed(job.id).await => Ok(None),
                // A refusal reports every fault of the tenant in one message.
                Err(faults) => Err(match <[AppError; 1]>::try_from(faults) {
                    Ok([fault]) => fault,
                    Err(faults) => AppError::BadUserInput {
                        field: None,
                        message: faults.iter().map(describe).collect::<Vec<_>>().join("; "),
                    },
                }),
            }
        };
        self.run_step(job, tenant_id, Step::Register, attempt, resumed, update)
            .await
    }

    /// Moves one tenant to another server; an interrupted or failed attempt is rolled back (or,
    /// past the switch, finished) by the next one.
    async fn move_one(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Uuid,
        (from, to): (&str, &str),
        first_attempt: u32,
        resumed: bool,
    ) -> JobEnd {
        let progress = self.progress_of(job);
        let moved = || async {
            let attempt = provisioning_jobs::Entity::find_by_id(job.id)
                .one(&self.state.db)
                .await?
                .map_or(first_attempt, |row| row.attempts as u32);
            let note_pause = |pause: i64| {
                let input = JobInput::Move {
                    from_server: from.to_owned(),
                    to_server: to.to_owned(),
                    write_pause_ms: Some(pause),
                };
                provisioning_jobs::Entity::update_many()
                    .col_expr(
                        provisioning_jobs::Column::Input,
                        Expr::value(serde_json::to_value(input).expect("inputs serialise")),
                    )
                    .filter(provisioning_jobs::Column::Id.eq(job.id))
                    .build(DbBackend::Postgres)
            };
            let again = resumed || attempt > first_attempt;
            let pause = moves::run(
                &self.state,
                &self.actor,
                moves::MoveOrder {
                    tenant_id,
                    from,
                    to,
                },
                again,
                self.timeout(),
                &progress,
                note_pause,
            )
            .await?;
            Ok(Some(match pause {
                Some(pause) => format!("moved to {to}; writes were held for {pause} ms"),
                None => format!("moved to {to}"),
            }))
        };
        self.run_step(job, tenant_id, Step::Migrate, first_attempt, resumed, moved)
            .await
    }

    /// Runs `work` (one step on an existing tenant) from attempt `attempt`, again after each
    /// transient failure within the retry budget, and records how the job ended. `work`
    /// answers the message of its success.
    async fn run_step<Work, Done>(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Uuid,
        step: Step,
        mut attempt: u32,
        resumed: bool,
        work: Work,
    ) -> JobEnd
    where
        Work: Fn() -> Done,
        Done: Future<Output = AppResult<Option<String>>>,
    {
        let started = Instant::now();
        loop {
            self.event(job, step, StepStatus::Started, None);
            match work().await {
                Ok(message) => {
                    self.event(job, step, StepStatus::Succeeded, message.as_deref());
                    return self
                        .job_finished(job, Some(tenant_id), started, None, resumed)
                        .await;
                }
                Err(error) if error.is_transient() && attempt <= self.options.retry_attempts => {
                    self.retry_after(job, attempt, &error).await;
                }
                Err(error) => {
                    self.event(
                        job,
                        step,
                        StepStatus::Failed,
                        Some(&error.client_message().0),
                    );
                    return self
                        .job_finished(job, Some(tenant_id), started, Some(error), resumed)
                        .await;
                }
            }
            attempt += 1;
        }
    }

    /// The time one tenant's work may take.
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.options.timeout_seconds.into())
    }

    /// Whether the job's update committed: its undo is stored.
    async fn update_committed(&self, job_id: Uuid) -> bool {
        match provisioning_jobs::Entity::find_by_id(job_id)
            .one(&self.state.db)
            .await
        {
            Ok(Some(job)) => update_noted(&job),
            Ok(None) => false,
            Err(err) => {
                tracing::error!(batch = %self.batch_id, job = %job_id, error = %err, "could not read a job's state");
                false
            }
        }
    }

    fn retry_step(&self) -> Step {
        match self.kind {
            BatchKind::Provision | BatchKind::Update => Step::Register,
            BatchKind::Migrate | BatchKind::Move => Step::Migrate,
        }
    }

    /// Announces the retry of `attempt`, waits its backoff and records the next attempt (the
    /// first is recorded with the job's start).
    async fn retry_after(&self, job: &provisioning_jobs::Model, attempt: u32, error: &AppError) {
        self.event(
            job,
            self.retry_step(),
            StepStatus::Retrying,
            Some(&error.client_message().0),
        );
        tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(attempt - 1)).await;
        self.update_job(job.id, |row| row.attempts = Set(attempt as i32 + 1))
            .await;
    }

    /// Events of one tenant's steps, as provisioning reports them.
    fn progress_of(&self, job: &provisioning_jobs::Model) -> Progress {
        let hub = self.state.events.clone();
        let template = self.event_of(job, Step::Validate, StepStatus::Started, None);
        Progress::new(move |step, status, message| {
            let mut event = template.clone();
            event.step = step;
            event.status = status;
            event.message = message.map(str::to_owned);
            event.at = Utc::now();
            hub.publish(event);
        })
    }

    fn event_of(
        &self,
        job: &provisioning_jobs::Model,
        step: Step,
        status: StepStatus,
        message: Option<&str>,
    ) -> ProgressEvent {
        ProgressEvent {
            batch_id: self.batch_id,
            seq: 0,
            tenant_name: Some(job.tenant_name.clone()),
            schema_name: job.schema_name.clone(),
            step,
            status,
            message: message.map(str::to_owned),
            // Counted by the hub when the event takes its place in the log.
            completed: 0,
            total: self.total,
            at: Utc::now(),
        }
    }

    fn event(
        &self,
        job: &provisioning_jobs::Model,
        step: Step,
        status: StepStatus,
        message: Option<&str>,
    ) {
        self.state
            .events
            .publish(self.event_of(job, step, status, message));
    }

    /// Records how a job ended and announces it.
    async fn job_finished(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Option<Uuid>,
        started: Instant,
        error: Option<AppError>,
        resumed: bool,
    ) -> JobEnd {
        let status = if error.is_some() {
            JobStatus::Failed
        } else {
            JobStatus::Succeeded
        };
        if error.is_some() && self.options.atomic {
            self.abandoned.store(true, Ordering::SeqCst);
        }
        let elapsed = started.elapsed();
        // One client text (and log reference) for the job's result and its last event.
        let message = error.as_ref().map(|e| e.client_message().0);
        let row = provisioning_jobs::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(job.id),
            status: Set(status),
            tenant_id: Set(tenant_id),
            error_code: Set(error.as_ref().map(|e| e.code().to_owned())),
            error_message: Set(message.clone()),
            finished_at: Set(Some(Utc::now().fixed_offset())),
            duration_ms: Set(Some(elapsed.as_millis() as i64)),
            resumed: Set(resumed),
            ..Default::default()
        };
        let step_status = if error.is_some() {
            StepStatus::Failed
        } else {
            StepStatus::Succeeded
        };
        // The job's end and its DONE event commit together: a server stopping in between
        // leaves neither, and the job is resumed; never a finished job without its event.
        let done = self.event_of(job, Step::Done, step_status, message.as_deref());
        if let Err(err) = self.record_with_event(Record::Job(row), done).await {
            tracing::error!(batch = %self.batch_id, job = %job.id, error = %err, "could not record a job's end");
        }
        JobEnd {
            job_id: job.id,
            error,
            api_key: None,
        }
    }

    /// A tenant refused before any work (bad input, a clash inside the batch).
    async fn end_without_work(
        &self,
        job: &provisioning_jobs::Model,
        step: Step,
        error: AppError,
    ) -> JobEnd {
        self.event(job, step, StepStatus::Started, None);
        self.event(
            job,
            step,
            StepStatus::Failed,
            Some(&error.client_message().0),
        );
        self.job_finished(job, None, Instant::now(), Some(error), false)
            .await
    }

    /// A tenant of an atomic batch that failed before it started: nothing was made.
    async fn skip(&self, job: &provisioning_jobs::Model) -> JobEnd {
        self.update_job(job.id, |row| {
            row.status = Set(JobStatus::RolledBack);
            row.error_message = Set(Some(
                "not started: another tenant of this atomic batch failed".into(),
            ));
            row.finished_at = Set(Some(Utc::now().fixed_offset()));
        })
        .await;
        self.event(
            job,
            Step::Done,
            StepStatus::Failed,
            Some("not started: the atomic batch is rolled back"),
        );
        JobEnd {
            job_id: job.id,
            error: None,
            api_key: None,
        }
    }

    /// Undoes what an atomic batch did (when anything failed, before a restart too), records
    /// the batch's outcome with its last event, and releases the lock. Returns the jobs undone.
    async fn finish(&self, ends: &[JobEnd], lock: HeldLock) -> HashSet<Uuid> {
        if self.lock_lost.load(Ordering::SeqCst) {
            // The server that took the batch over finishes it.
            self.state.events.close(self.batch_id).await;
            lock.release().await;
            return HashSet::new();
        }
        let mut jobs = match self.jobs().await {
            Ok(jobs) => jobs,
            Err(err) => {
                tracing::error!(batch = %self.batch_id, error = %err, "could not read the batch's jobs; it is left for another try");
                self.state.events.close(self.batch_id).await;
                lock.release().await;
                return HashSet::new();
            }
        };
        let mut undone = HashSet::new();
        let any_failed = jobs.iter().any(|job| job.status == JobStatus::Failed);
        let rolled_back = self.options.atomic && any_failed;
        if rolled_back {
            for job in jobs
                .iter_mut()
                .filter(|job| job.status == JobStatus::Succeeded)
            {
                if self.undo(job).await {
                    job.status = JobStatus::RolledBack;
                    undone.insert(job.id);
                }
            }
        }
        let count =
            |status: JobStatus| jobs.iter().filter(|job| job.status == status).count() as i32;
        let (successful, failed) = (count(JobStatus::Succeeded), count(JobStatus::Failed));
        let status = if rolled_back {
            BatchStatus::RolledBack
        } else if failed == 0 {
            BatchStatus::Succeeded
        } else if successful == 0 {
            BatchStatus::Failed
        } else {
            BatchStatus::PartiallyFailed
        };
        let last = ProgressEvent {
            batch_id: self.batch_id,
            seq: 0,
            tenant_name: None,
            schema_name: None,
            step: Step::Done,
            status: if status == BatchStatus::Succeeded {
                StepStatus::Succeeded
            } else {
                StepStatus::Failed
            },
            message: Some(<&str>::from(status).to_owned()),
            completed: self.total,
            total: self.total,
            at: Utc::now(),
        };
        // The outcome and the last event commit together: a subscriber that sees the batch
        // finished finds its last event, and a batch is never finished twice.
        let row = provisioning_batches::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(self.batch_id),
            status: Set(status),
            successful: Set(successful),
            failed: Set(failed),
            finished_at: Set(Some(Utc::now().fixed_offset())),
            ..Default::default()
        };
        let mut outcome = serde_json::json!({
            "batchId": self.batch_id,
            "kind": <&str>::from(self.kind),
            "status": <&str>::from(status),
            "total": self.total,
            "successful": successful,
            "failed": failed,
        });
        if let Some(pause) = jobs.iter().find_map(crate::batch::write_pause_ms) {
            outcome["writePauseMs"] = pause.into();
        }
        if let Err(err) = self
            .record_with_event(Record::Batch(row, outcome), last)
            .await
        {
            tracing::error!(batch = %self.batch_id, error = %err, "could not record the end of the batch");
        }
        self.state.events.close(self.batch_id).await;
        lock.release().await;
        let failures: Vec<String> = ends
            .iter()
            .filter_map(|end| end.error.as_ref().map(|e| e.code().to_owned()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let resumed = jobs.iter().filter(|job| job.resumed).count();
        tracing::info!(batch = %self.batch_id, status = <&str>::from(status), successful, failed, resumed, ?failures, "batch finished");
        undone
    }

    /// Returns a succeeded tenant of an undone atomic batch to where it was before; whether it
    /// was.
    async fn undo(&self, job: &provisioning_jobs::Model) -> bool {
        let Some(tenant_id) = job.tenant_id else {
            return true;
        };
        self.event(job, Step::Rollback, StepStatus::Started, None);
        let undone = match (&self.kind, stored_input(job)) {
            (BatchKind::Provision, _) => admin::delete(&self.state, &self.actor, tenant_id, true)
                .await
                .map(|_| ()),
            (BatchKind::Migrate, Some(JobInput::Migrate { from_revision })) => {
                let previous = match from_revision {
                    Some(revision) => Target::Revision(revision),
                    None => Target::Base,
                };
                migrate::run_migrations(
                    &self.state,
                    &self.actor,
                    tenant_id,
                    previous,
                    MigrationMode::Whole,
                )
                .await
                .map(|_| ())
            }
            (
                BatchKind::Update,
                Some(JobInput::Update {
                    undo: Some(undo), ..
                }),
            ) => admin::undo(&self.state, &self.actor, tenant_id, &undo).await,
            // Nothing was noted, so nothing was changed; a move is never undone by the batch
            // (it is one tenant, rolled back by the move itself when it fails).
            (BatchKind::Migrate | BatchKind::Update | BatchKind::Move, _) => Ok(()),
        };
        match undone {
            Ok(()) => {
                self.event(job, Step::Rollback, StepStatus::Succeeded, None);
                self.update_job(job.id, |row| {
                    row.status = Set(JobStatus::RolledBack);
                })
                .await;
                true
            }
            Err(err) => {
                self.event(
                    job,
                    Step::Rollback,
                    StepStatus::Failed,
                    Some(&err.client_message().0),
                );
                tracing::error!(batch = %self.batch_id, tenant = %tenant_id, error = ?err, "could not undo a tenant of an atomic batch");
                false
            }
        }
    }

    /// Records a change and the event announcing it in one transaction.
    async fn record_with_event(
        &self,
        change: Record,
        event: ProgressEvent,
    ) -> Result<(), sea_orm::DbErr> {
        let sql = match change {
            Record::Job(row) => {
                update_by_key(row, provisioning_jobs::Column::Id).to_string(PostgresQueryBuilder)
            }
            Record::Batch(row, outcome) => {
                let update = update_by_key(row, provisioning_batches::Column::Id)
                    .to_string(PostgresQueryBuilder);
                let audited = audit::record_script(
                    &self.actor,
                    "batch.finished",
                    None,
                    Outcome::Success,
                    outcome,
                );
                format!("{update};\n{audited}")
            }
        };
        self.state.events.store_with(sql, Some(event)).await
    }

    /// Records a change of a job's row (with the events published before it).
    async fn update_job(
        &self,
        job_id: Uuid,
        change: impl FnOnce(&mut provisioning_jobs::ActiveModel),
    ) {
        let mut row = provisioning_jobs::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(job_id),
            ..Default::default()
        };
        change(&mut row);
        let change =
            update_by_key(row, provisioning_jobs::Column::Id).to_string(PostgresQueryBuilder);
        if let Err(err) = self.state.events.store_with(change, None).await {
            tracing::error!(batch = %self.batch_id, job = %job_id, error = %err, "could not record a job's state");
        }
    }
}

/// A change recorded together with its event.
enum Record {
    /// A job's row (holding its id).
    Job(provisioning_jobs::ActiveModel),
    /// The batch's end, with its outcome for the audit trail (and the `batch.finished` webhook).
    Batch(provisioning_batches::ActiveModel, serde_json::Value),
}

/// What the job stored for running it (again); `None` for a job recorded by a version that
/// did not store it.
fn stored_input(job: &provisioning_jobs::Model) -> Option<JobInput> {
    job.input
        .clone()
        .and_then(|input| serde_json::from_value(input).ok())
}

/// Whether an update job's change committed: its undo is stored with it.
fn update_noted(job: &provisioning_jobs::Model) -> bool {
    matches!(
        stored_input(job),
        Some(JobInput::Update { undo: Some(_), .. })
    )
}

/// The error a job was refused with at submission, as stored.
fn refused(code: &str, message: String) -> AppError {
    match code {
        "CONFLICT" => AppError::Conflict {
            field: Some("domain".into()),
            message,
        },
        _ => AppError::BadUserInput {
            field: None,
            message,
        },
    }
}

/// What a provisioning job seeds besides its draft, as stored at submission.
struct Seed {
    admin: Option<crate::tenancy::seed::PendingAdmin>,
    roles: Vec<crate::tenancy::seed::SeedRole>,
}

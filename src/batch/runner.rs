//! Running a batch: bounded parallelism, a timeout and retries per tenant, isolated failures,
//! all-or-nothing on request, and a progress event for every step.

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
use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use crate::{
    audit::Actor,
    batch::{
        BatchKind, BatchOptions, BatchStatus, JobStatus, events::ProgressEvent, lock::BatchLock,
    },
    error::AppError,
    state::SharedState,
    tenancy::{
        Progress, Step, StepStatus, admin,
        migrate::{self, MigrationMode},
        migrator::Target,
        provision::{self, ProvisionOptions},
        validation::{TenantDraft, ValidTenant, validate_new_tenant},
    },
};

/// Pause before the first retry; it doubles with each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

pub struct Runner {
    state: SharedState,
    actor: Actor,
    batch_id: Uuid,
    kind: BatchKind,
    total: i32,
    options: BatchOptions,
    /// Set when an atomic batch has a failure: tenants not yet started are skipped.
    abandoned: AtomicBool,
}

/// How one job ended.
struct JobEnd {
    job: provisioning_jobs::Model,
    tenant_id: Option<Uuid>,
    status: JobStatus,
    error: Option<AppError>,
    api_key: Option<String>,
    /// For a migration: where the tenant was before, to return it there if the batch is undone.
    previous_revision: Option<Target>,
}

impl Runner {
    pub fn new(
        state: SharedState,
        actor: Actor,
        batch: &provisioning_batches::Model,
        options: BatchOptions,
    ) -> Arc<Self> {
        Arc::new(Runner {
            state,
            actor,
            batch_id: batch.id,
            kind: batch.kind,
            total: batch.total,
            options,
            abandoned: AtomicBool::new(false),
        })
    }

    /// Provisions every draft; returns the new tenants' API keys by job.
    #[tracing::instrument(name = "batch", skip_all, fields(batch_id = %self.batch_id, kind = "PROVISION"))]
    pub async fn provision(
        self: Arc<Self>,
        work: Vec<(provisioning_jobs::Model, TenantDraft)>,
    ) -> HashMap<Uuid, String> {
        let Some(lock) = self.start().await else {
            return HashMap::new();
        };
        let mut ends = Vec::new();
        let mut runnable = Vec::new();
        let mut seen: HashMap<String, i32> = HashMap::new();
        for (job, draft) in work {
            self.event(&job, Step::Validate, StepStatus::Started, None);
            match validate_new_tenant(&draft, &self.state.config.tenant_schema_prefix) {
                Err(faults) => {
                    let message = faults.iter().map(describe).collect::<Vec<_>>().join("; ");
                    let error = AppError::BadUserInput {
                        field: None,
                        message,
                    };
                    ends.push(self.end_without_work(&job, Step::Validate, error).await);
                }
                Ok(valid) => {
                    let clash = [valid.domain.clone(), valid.schema.as_str().to_owned()]
                        .into_iter()
                        .find_map(|key| seen.get(&key).copied());
                    if let Some(first) = clash {
                        let error = AppError::conflict(
                            "domain",
                            format!(
                                "the same domain or schema as tenant #{} of this batch",
                                first + 1
                            ),
                        );
                        ends.push(self.end_without_work(&job, Step::Validate, error).await);
                        continue;
                    }
                    seen.insert(valid.domain.clone(), job.position);
                    seen.insert(valid.schema.as_str().to_owned(), job.position);
                    self.event(&job, Step::Validate, StepStatus::Succeeded, None);
                    runnable.push((job, valid));
                }
            }
        }
        if self.options.atomic && !ends.is_empty() {
            self.abandoned.store(true, Ordering::SeqCst);
        }
        let concurrency = self.options.max_concurrency as usize;
        let this = &self;
        ends.extend(
            stream::iter(runnable)
                .map(|(job, valid)| this.provision_one(job, valid))
                .buffer_unordered(concurrency)
                .collect::<Vec<_>>()
                .await,
        );
        self.finish(ends, lock).await
    }

    /// Migrates every tenant to `target`.
    #[tracing::instrument(name = "batch", skip_all, fields(batch_id = %self.batch_id, kind = "MIGRATE"))]
    pub async fn migrate(
        self: Arc<Self>,
        work: Vec<(provisioning_jobs::Model, tenants::Model)>,
        target: Target,
    ) -> HashMap<Uuid, String> {
        let Some(lock) = self.start().await else {
            return HashMap::new();
        };
        let concurrency = self.options.max_concurrency as usize;
        let this = &self;
        let target = &target;
        let ends = stream::iter(work)
            .map(|(job, tenant)| this.migrate_one(job, tenant, target))
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        self.finish(ends, lock).await
    }

    /// Takes the batch's lock and marks it running.
    async fn start(&self) -> Option<BatchLock> {
        let lock = match BatchLock::acquire(&self.state, self.batch_id).await {
            Ok(lock) => lock,
            Err(err) => {
                tracing::error!(batch = %self.batch_id, error = %err, "could not lock the batch; it is left for recovery");
                return None;
            }
        };
        let started = provisioning_batches::Entity::update(provisioning_batches::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(self.batch_id),
            status: Set(BatchStatus::Running),
            started_at: Set(Some(Utc::now().fixed_offset())),
            ..Default::default()
        })
        .exec(&self.state.db)
        .await;
        if let Err(err) = started {
            tracing::error!(batch = %self.batch_id, error = %err, "could not start the batch");
        }
        Some(lock)
    }

    #[tracing::instrument(
        name = "batch job",
        skip_all,
        fields(position = job.position, tenant_id = tracing::field::Empty, schema = %valid.schema)
    )]
    async fn provision_one(&self, job: provisioning_jobs::Model, valid: ValidTenant) -> JobEnd {
        if self.abandoned.load(Ordering::SeqCst) {
            return self.skip(&job).await;
        }
        let tenant_id = Uuid::new_v4();
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant_id));
        let started = self.job_started(&job, Some(tenant_id)).await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.job_attempt(&job, attempt).await;
            let progress = self.progress_of(&job);
            let options = ProvisionOptions {
                provision_schema: true,
                run_migrations: true,
                timeout: Duration::from_secs(self.options.timeout_seconds.into()),
                progress,
                tenant_id: Some(tenant_id),
            };
            match provision::create(&self.state, &self.actor, valid.clone(), options).await {
                Ok(created) => {
                    let mut end = self
                        .job_finished(&job, Some(created.tenant.id), started, None)
                        .await;
                    end.api_key = Some(created.api_key);
                    return end;
                }
                Err(error) if error.is_transient() && attempt <= self.options.retry_attempts => {
                    self.retry_after(&job, attempt, &error).await;
                }
                Err(error) => return self.job_finished(&job, None, started, Some(error)).await,
            }
        }
    }

    #[tracing::instrument(
        name = "batch job",
        skip_all,
        fields(position = job.position, tenant_id = %tenant.id, schema = %tenant.schema_name)
    )]
    async fn migrate_one(
        &self,
        job: provisioning_jobs::Model,
        tenant: tenants::Model,
        target: &Target,
    ) -> JobEnd {
        if self.abandoned.load(Ordering::SeqCst) {
            return self.skip(&job).await;
        }
        let started = self.job_started(&job, Some(tenant.id)).await;
        let previous_revision = Some(match &tenant.current_revision {
            Some(revision) => Target::Revision(revision.clone()),
            None => Target::Base,
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.job_attempt(&job, attempt).await;
            self.event(&job, Step::Migrate, StepStatus::Started, None);
            let migrated = tokio::time::timeout(
                Duration::from_secs(self.options.timeout_seconds.into()),
                migrate::run_migrations(
                    &self.state,
                    &self.actor,
                    tenant.id,
                    target.clone(),
                    MigrationMode::Whole,
                ),
            )
            .await
            .unwrap_or_else(|_| Err(AppError::Timeout("the migration took too long".into())));
            match migrated {
                Ok((_, reached)) => {
                    let message = reached.current_revision().unwrap_or("base").to_owned();
                    self.event(&job, Step::Migrate, StepStatus::Succeeded, Some(&message));
                    let mut end = self
                        .job_finished(&job, Some(tenant.id), started, None)
                        .await;
                    end.previous_revision = previous_revision;
                    return end;
                }
                Err(error) if error.is_transient() && attempt <= self.options.retry_attempts => {
                    self.retry_after(&job, attempt, &error).await;
                }
                Err(error) => {
                    self.event(
                        &job,
                        Step::Migrate,
                        StepStatus::Failed,
                        Some(&error.client_message().0),
                    );
                    return self
                        .job_finished(&job, Some(tenant.id), started, Some(error))
                        .await;
                }
            }
        }
    }

    async fn retry_after(&self, job: &provisioning_jobs::Model, attempt: u32, error: &AppError) {
        let step = match self.kind {
            BatchKind::Provision => Step::Register,
            BatchKind::Migrate => Step::Migrate,
        };
        self.event(
            job,
            step,
            StepStatus::Retrying,
            Some(&error.client_message().0),
        );
        tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(attempt - 1)).await;
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

    async fn job_started(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Option<Uuid>,
    ) -> Instant {
        self.update_job(job.id, |row| {
            row.status = Set(JobStatus::Running);
            row.tenant_id = Set(tenant_id);
            row.started_at = Set(Some(Utc::now().fixed_offset()));
        })
        .await;
        Instant::now()
    }

    async fn job_attempt(&self, job: &provisioning_jobs::Model, attempt: u32) {
        self.update_job(job.id, |row| row.attempts = Set(attempt as i32))
            .await;
    }

    /// Records how a job ended and announces it.
    async fn job_finished(
        &self,
        job: &provisioning_jobs::Model,
        tenant_id: Option<Uuid>,
        started: Instant,
        error: Option<AppError>,
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
        self.update_job(job.id, |row| {
            row.status = Set(status);
            row.tenant_id = Set(tenant_id);
            row.error_code = Set(error.as_ref().map(|e| e.code().to_owned()));
            row.error_message = Set(message.clone());
            row.finished_at = Set(Some(Utc::now().fixed_offset()));
            row.duration_ms = Set(Some(elapsed.as_millis() as i64));
        })
        .await;
        let step_status = if error.is_some() {
            StepStatus::Failed
        } else {
            StepStatus::Succeeded
        };
        self.event(job, Step::Done, step_status, message.as_deref());
        JobEnd {
            job: job.clone(),
            tenant_id,
            status,
            error,
            api_key: None,
            previous_revision: None,
        }
    }

    /// A tenant refused before any work (bad input, a clash inside the batch).
    async fn end_without_work(
        &self,
        job: &provisioning_jobs::Model,
        step: Step,
        error: AppError,
    ) -> JobEnd {
        self.event(
            job,
            step,
            StepStatus::Failed,
            Some(&error.client_message().0),
        );
        self.job_finished(job, None, Instant::now(), Some(error))
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
            job: job.clone(),
            tenant_id: None,
            status: JobStatus::RolledBack,
            error: None,
            api_key: None,
            previous_revision: None,
        }
    }

    /// Undoes what an atomic batch did (when anything failed), records the batch's outcome,
    /// announces the end, releases the lock.
    async fn finish(&self, mut ends: Vec<JobEnd>, lock: BatchLock) -> HashMap<Uuid, String> {
        let any_failed = ends.iter().any(|end| end.status == JobStatus::Failed);
        let rolled_back = self.options.atomic && any_failed;
        if rolled_back {
            for end in ends
                .iter_mut()
                .filter(|end| end.status == JobStatus::Succeeded)
            {
                self.undo(end).await;
            }
        }
        let successful = ends
            .iter()
            .filter(|e| e.status == JobStatus::Succeeded)
            .count() as i32;
        let failed = ends
            .iter()
            .filter(|e| e.status == JobStatus::Failed)
            .count() as i32;
        let status = if rolled_back {
            BatchStatus::RolledBack
        } else if failed == 0 {
            BatchStatus::Succeeded
        } else if successful == 0 {
            BatchStatus::Failed
        } else {
            BatchStatus::PartiallyFailed
        };
        let finished = provisioning_batches::Entity::update(provisioning_batches::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(self.batch_id),
            status: Set(status),
            successful: Set(successful),
            failed: Set(failed),
            finished_at: Set(Some(Utc::now().fixed_offset())),
            ..Default::default()
        })
        .exec(&self.state.db)
        .await;
        if let Err(err) = finished {
            tracing::error!(batch = %self.batch_id, error = %err, "could not record the end of the batch");
        }
        self.state.events.publish(ProgressEvent {
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
        });
        lock.release().await;
        let failures: Vec<String> = ends
            .iter()
            .filter_map(|end| end.error.as_ref().map(|e| e.code().to_owned()))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        tracing::info!(batch = %self.batch_id, status = <&str>::from(status), successful, failed, ?failures, "batch finished");
        ends.into_iter()
            .filter_map(|end| end.api_key.map(|key| (end.job.id, key)))
            .collect()
    }

    /// Returns a succeeded tenant of an undone atomic batch to where it was before.
    async fn undo(&self, end: &mut JobEnd) {
        let Some(tenant_id) = end.tenant_id else {
            return;
        };
        self.event(&end.job, Step::Rollback, StepStatus::Started, None);
        let undone = match (&self.kind, &end.previous_revision) {
            (BatchKind::Provision, _) => admin::delete(&self.state, &self.actor, tenant_id, true)
                .await
                .map(|_| ()),
            (BatchKind::Migrate, Some(previous)) => migrate::run_migrations(
                &self.state,
                &self.actor,
                tenant_id,
                previous.clone(),
                MigrationMode::Whole,
            )
            .await
            .map(|_| ()),
            (BatchKind::Migrate, None) => Ok(()),
        };
        match undone {
            Ok(()) => {
                self.event(&end.job, Step::Rollback, StepStatus::Succeeded, None);
                end.status = JobStatus::RolledBack;
                end.api_key = None;
                self.update_job(end.job.id, |row| {
                    row.status = Set(JobStatus::RolledBack);
                })
                .await;
            }
            Err(err) => {
                self.event(
                    &end.job,
                    Step::Rollback,
                    StepStatus::Failed,
                    Some(&err.client_message().0),
                );
                tracing::error!(batch = %self.batch_id, tenant = %tenant_id, error = ?err, "could not undo a tenant of an atomic batch");
            }
        }
    }

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
        if let Err(err) = provisioning_jobs::Entity::update(row)
            .exec(&self.state.db)
            .await
        {
            tracing::error!(batch = %self.batch_id, job = %job_id, error = %err, "could not record a job's state");
        }
    }
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

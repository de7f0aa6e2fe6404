//! `tenants provision --file` and `migrate tenants up`: batches at a terminal, with a progress
//! bar fed by the same events subscribers get, and a summary table.

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::{
    audit::Actor,
    batch::{self, BatchOptions, BatchReport, JobStatus},
    state::SharedState,
    tenancy::{Step, migrator::Target, validation::TenantDraft},
};

/// A batch file: a list of tenants, bare or under `tenants`.
#[derive(Deserialize)]
#[serde(untagged)]
enum BatchFile {
    List(Vec<TenantDraft>),
    Wrapped { tenants: Vec<TenantDraft> },
}

fn options(state: &SharedState) -> BatchOptions {
    BatchOptions {
        max_concurrency: state.config.max_concurrent_operations,
        atomic: false,
        retry_attempts: state.config.retry_attempts,
        timeout_seconds: state.config.operation_timeout.as_secs() as u32,
        wait: false,
    }
}

pub async fn provision_file(
    state: &SharedState,
    file: &Path,
    contact_email: Option<&str>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read {}", file.display()))?;
    let parsed: BatchFile = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a list of tenants", file.display()))?;
    let mut drafts = match parsed {
        BatchFile::List(drafts) | BatchFile::Wrapped { tenants: drafts } => drafts,
    };
    if let Some(email) = contact_email {
        for draft in drafts.iter_mut().filter(|d| d.email.trim().is_empty()) {
            draft.email = email.to_owned();
        }
    }
    let report = batch::provision_tenants(state, &Actor::system(), drafts, options(state))
        .await
        .context("starting the provisioning batch")?;
    finish(state, report, true).await
}

pub async fn migrate_all(state: &SharedState, target: Target) -> anyhow::Result<()> {
    let behind = crate::tenancy::fleet::tenants_behind(state, &target)
        .await
        .context("finding the tenants behind the target")?;
    if behind.is_empty() {
        println!("every tenant is at the target revision");
        return Ok(());
    }
    let ids = behind.iter().map(|tenant| tenant.id).collect();
    let mut options = options(state);
    options.retry_attempts = options.retry_attempts.min(10);
    let report = batch::migrate_tenants(state, &Actor::system(), target, Some(ids), options)
        .await
        .context("starting the migration batch")?;
    finish(state, report, false).await
}

/// Follows the batch on a progress bar, then prints every tenant's result.
async fn finish(state: &SharedState, report: BatchReport, show_keys: bool) -> anyhow::Result<()> {
    let batch_id = report.batch.id;
    let bar = ProgressBar::new(report.batch.total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {msg} ({elapsed})")
            .expect("valid progress template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut events = batch::progress::follow(state.clone(), batch_id);
    while let Some(event) = events.next().await {
        if track(&bar, &event) {
            break;
        }
    }
    let api_keys = match report.running {
        Some(running) => running.await.context("the batch task failed")?,
        None => report.api_keys,
    };
    bar.finish_and_clear();

    let report = batch::load(state, batch_id)
        .await
        .context("reading the finished batch")?
        .context("the batch disappeared")?;
    println!(
        "{:<32} {:<34} {:<12} {:>7}  {}",
        "domain",
        "schema",
        "result",
        "ms",
        if show_keys {
            "api key / error"
        } else {
            "error"
        }
    );
    for job in &report.jobs {
        let detail = match (&job.error_message, api_keys.get(&job.id)) {
            (Some(error), _) => error.clone(),
            (None, Some(key)) if show_keys => key.clone(),
            _ => String::new(),
        };
        println!(
            "{:<32} {:<34} {:<12} {:>7}  {detail}",
            job.domain,
            job.schema_name.as_deref().unwrap_or("-"),
            job.status.name(),
            job.duration_ms.unwrap_or_default()
        );
    }
    let batch = &report.batch;
    println!(
        "batch {} {}: {} succeeded, {} failed, of {}",
        batch.id,
        batch.status.name(),
        batch.successful,
        batch.failed,
        batch.total
    );
    let failed = report
        .jobs
        .iter()
        .filter(|job| job.status != JobStatus::Succeeded)
        .count();
    if failed > 0 {
        bail!("{failed} tenant(s) did not succeed");
    }
    Ok(())
}

/// Moves the bar on each finished tenant; true at the end of the batch.
fn track(bar: &ProgressBar, event: &batch::events::ProgressEvent) -> bool {
    if event.ends_batch() {
        return true;
    }
    if event.step == Step::Done {
        bar.inc(1);
        if let Some(name) = &event.tenant_name {
            bar.set_message(name.clone());
        }
    }
    false
}

//! The tenant life cycle, one concern a module:
//!
//! - [`validation`] checks a tenant's input (schema names are
//!   [`crate::primitives::schema_name`]).
//! - [`provision`] registers a tenant and makes its schema; [`migrate`] moves a registered
//!   tenant's schema up or down and records where it is; [`admin`] updates, deactivates,
//!   deletes and rotates keys; [`backup`] writes one tenant to a file and restores it;
//!   [`clone`] provisions a new tenant as a copy of another's structure (and rows).
//! - [`registry`] reads and changes `public.tenants`; [`directory`] caches it for request
//!   authentication; [`activity`] records `lastActivityAt`.
//! - [`migrator`] is the per-schema migration machinery, [`rendered`] its one-round-trip form
//!   for fleet migrations; [`seed`] the data a schema starts with,
//!   [`templates`] the defaults per tenant type it may start with;
//!   [`health`] compares a schema with the registry, [`drift`] with its revision's structure;
//!   [`fleet`] finds tenants behind a revision.
//!
//! States move `PENDING → PROVISIONING → ACTIVE` (or `FAILED`), and `INACTIVE` when deactivated
//! or when migrated below head ([`guard`]: confirmations of destructive operations).

pub mod activity;
pub mod admin;
pub mod backup;
pub mod clone;
pub mod directory;
pub mod drift;
pub mod fleet;
pub mod guard;
pub mod health;
pub mod migrate;
pub mod migrator;
pub mod moves;
pub mod provision;
pub mod registry;
pub mod rendered;
pub mod seed;
pub mod servers;
pub mod templates;
pub mod validation;

/// Runs `work` in a task of its own, inside the current span: a client that disconnects mid-way
/// does not cancel schema work half done.
pub(crate) async fn run_detached<T: Send + 'static>(
    what: &'static str,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> crate::error::AppResult<T> {
    use anyhow::Context;
    use tracing::Instrument;
    tokio::spawn(work.in_current_span())
        .await
        .with_context(|| format!("the {what} task failed"))
        .map_err(crate::error::AppError::internal)
}

/// Names the tenant an operation is about on the current span, which declares `schema` (and,
/// when the caller did not know it, `tenant_id`) as `tracing::field::Empty`.
pub(crate) fn record_tenant(tenant: &entity::public::tenants::Model) {
    let span = tracing::Span::current();
    span.record("tenant_id", tracing::field::display(tenant.id));
    span.record("schema", tenant.schema_name.as_str());
}

/// Where a tenant is in its life cycle (the registry's `status`, a typed column).
pub use entity::public::tenants::TenantStatus;

/// The steps of provisioning a tenant and how each went, as reported in errors and progress
/// events (typed columns of the batch tables).
pub use entity::public::provisioning_events::{Step, StepStatus};

type ReportStep = dyn Fn(Step, StepStatus, Option<&str>) + Send + Sync;

/// Where the steps of one tenant's provisioning are reported; nowhere by default.
#[derive(Clone, Default)]
pub struct Progress(Option<std::sync::Arc<ReportStep>>);

impl Progress {
    pub fn none() -> Self {
        Progress(None)
    }

    pub fn new(report: impl Fn(Step, StepStatus, Option<&str>) + Send + Sync + 'static) -> Self {
        Progress(Some(std::sync::Arc::new(report)))
    }

    pub fn report(&self, step: Step, status: StepStatus, message: Option<&str>) {
        if let Some(report) = &self.0 {
            report(step, status, message);
        }
    }
}

//! Logging: `RUST_LOG` filters, `LOG_FORMAT` picks human or JSON lines.
//!
//! Life-cycle operations, batch jobs and requests run in spans that carry `tenant_id` and `schema`
//! (never secrets), so a JSON line says which tenant it was about.

use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*, registry::LookupSpan};

use crate::config::LogFormat;

/// Installs the global subscriber; a second call (as in tests) keeps the first.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Pretty => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry.with(json_layer(std::io::stdout)).try_init(),
    };
}

/// The JSON lines of `LOG_FORMAT=json`: the event's fields at the top, the current span and the
/// list of spans it runs in beside them.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(writer)
}

//! The router's log and trace output: the `tracing` subscriber `boted`
//! installs (text or JSON log lines on stderr, filtered by `log-level`) and,
//! when `[telemetry] otlp-endpoint` is set, the OpenTelemetry layer that
//! exports message spans ([`crate::delivery::trace`]) over OTLP/gRPC with
//! `service.name` and the router id (`bote.router.id`) as resource
//! attributes.
//!
//! JSON log lines written inside a traced delivery carry its OpenTelemetry
//! `trace_id` and `span_id`: message spans record their ids in the span's
//! registry extensions (`delivery::trace::record_ids`) and the JSON formatter reads them
//! from the current span scope.

use std::fmt;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets};

use crate::config::{LogFormat, TelemetryConfig};
use crate::delivery::trace::{self as message_trace, TraceIds};

/// How often batched spans are exported.
const EXPORT_INTERVAL: Duration = Duration::from_millis(500);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log-level {level:?}: {source}")]
    LogLevel {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("[telemetry] otlp-endpoint {endpoint:?}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("installing the tracing subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the span exporter; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans buffered so far and waits for the export.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.force_flush()
        {
            eprintln!("boted: flushing spans: {e}");
        }
    }

    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("boted: flushing spans: {e}");
        }
    }
}

/// Installs the global subscriber: log lines at `log_level` (`RUST_LOG`
/// wins when set) in `format`, and message spans exported to the
/// configured endpoint. Must run inside a tokio runtime (the gRPC exporter
/// spawns its connection task there).
pub fn init(
    log_level: &str,
    format: LogFormat,
    telemetry: &TelemetryConfig,
    router_id: &str,
) -> Result<Telemetry, TelemetryError> {
    let level = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => v,
        _ => log_level.to_owned(),
    };
    // Text logs leave message spans out (formatting their fields for every
    // traced delivery would cost more than exporting them); JSON logs keep
    // them, for the trace and span ids of lines written inside them.
    let directives = match format {
        LogFormat::Text => format!("{level},{}=off", message_trace::TARGET),
        LogFormat::Json => level.clone(),
    };
    let filter = EnvFilter::try_new(&directives).map_err(|source| TelemetryError::LogLevel {
        level: level.clone(),
        source,
    })?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            // Colour only for a terminal: logs collected from a pipe or a
            // file (systemd, Kubernetes, tests) stay plain text.
            .with_ansi(ansi)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format().json().with_target(false),
            ))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .with_filter(filter)
            .boxed(),
    };
    let (otel, provider) = match &telemetry.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|source| TelemetryError::Exporter {
                    endpoint: endpoint.clone(),
                    source,
                })?;
            let batch = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_scheduled_delay(EXPORT_INTERVAL)
                        .build(),
                )
                .build();
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(telemetry.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "bote.router.id",
                    router_id.to_owned(),
                ))
                .build();
            // The sampling decision is the router's (delivery::trace): a
            // span is only created for a sampled delivery.
            let provider = SdkTracerProvider::builder()
                .with_span_processor(batch)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("bote");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                .with_level(false)
                .with_filter(
                    Targets::new().with_target(message_trace::TARGET, tracing::Level::TRACE),
                );
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init()?;
    if provider.is_some() {
        message_trace::enable(
            telemetry.sampling_ratio,
            router_id,
            format == LogFormat::Json,
        );
    }
    Ok(Telemetry { provider })
}

/// A JSON event format that adds `trace_id` and `span_id` to lines written
/// inside a traced delivery.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = ctx.lookup_current().and_then(|current| {
            current
                .scope()
                .find_map(|span| span.extensions().get::<TraceIds>().copied())
        });
        let Some(ids) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.rfind('}') {
            Some(end) => write!(
                writer,
                "{},\"trace_id\":\"{}\",\"span_id\":\"{}\"{}",
                &line[..end],
                ids.trace_id,
                ids.span_id,
                &line[end..]
            ),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::trace::record_ids;
    use opentelemetry::trace::TraceContextExt;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_inside_a_traced_span_carry_its_trace_and_span_ids() {
        let out = Captured::default();
        let writer = out.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .event_format(WithTraceIds(tracing_subscriber::fmt::format().json()))
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            tracing::info!("outside");
            let span = tracing::info_span!("receive");
            record_ids(&span);
            span.in_scope(|| tracing::info!(outcome = "accepted", "delivery settled"));
            let sc = span.context().span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["fields"]["message"], "delivery settled");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert_eq!(trace_id.len(), 32);
    }
}

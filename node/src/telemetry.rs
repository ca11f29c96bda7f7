//! The router's log and trace output: the `tracing` subscriber `boted`
//! installs (text or JSON log lines on stderr, filtered by `log-level`) and,
//! when `[telemetry] otlp-endpoint` is set, two span pipelines to that
//! endpoint, both over OTLP/gRPC with `service.name` and the router id
//! (`bote.router.id`) as resource attributes:
//! - message spans ([`crate::delivery::trace`]), one or more per traced
//!   delivery, through the span-record exporter ([`crate::otlp`]): the hot
//!   path, where the SDK's pipeline cost too much (ARCHITECTURE.md,
//!   "Message tracing");
//! - the router's operation spans (target [`OPS_TARGET`]: management
//!   requests, route recomputes), a few a second at most, as `tracing`
//!   spans through `tracing-opentelemetry`, the OpenTelemetry SDK's batch
//!   processor and `opentelemetry-otlp`. Without an endpoint no layer
//!   wants them and their callsites stay disabled.
//!
//! JSON log lines written inside a traced delivery carry its OpenTelemetry
//! `trace_id` and `span_id`: the delivery writes them in a `tracing` span
//! holding the ids in its registry extensions (`delivery::trace::record_ids`)
//! and the JSON formatter reads them from the current span scope.

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
use crate::otlp::{ExporterError, SpanExporter};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log-level {level:?}: {source}")]
    LogLevel {
        level: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("[telemetry] otlp-endpoint: {0}")]
    Exporter(#[from] ExporterError),
    #[error("[telemetry] otlp-endpoint {endpoint:?} (operation spans): {source}")]
    OpsExporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("installing the tracing subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// The `tracing` target of the router's operation spans (management
/// requests, route recomputes): exported through `tracing-opentelemetry`
/// when an OTLP endpoint is set, left out of log lines.
pub const OPS_TARGET: &str = "bote::ops";

/// How often the operation spans' batch processor exports.
const OPS_EXPORT_INTERVAL: Duration = Duration::from_millis(500);

/// Keeps the span exporters; [`Telemetry::shutdown`] flushes them.
pub struct Telemetry {
    exporter: Option<SpanExporter>,
    ops: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans queued so far and waits for the export (blocks:
    /// not from a task of the runtime `init` ran in).
    pub fn flush(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.flush();
        }
        if let Some(ops) = &self.ops
            && let Err(e) = ops.force_flush()
        {
            eprintln!("boted: flushing operation spans: {e}");
        }
    }

    /// Exports the spans still queued and stops the exporter.
    pub fn shutdown(self) {
        if let Some(exporter) = self.exporter {
            exporter.shutdown();
        }
        if let Some(ops) = self.ops
            && let Err(e) = ops.shutdown()
        {
            eprintln!("boted: flushing operation spans: {e}");
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
    // Text logs leave out the span a traced delivery writes its settle line
    // in (they show no ids); JSON logs keep it, for the trace and span ids
    // of the lines written inside it.
    // Operation spans are for the trace exporter only: log lines written
    // inside them look as they would without them.
    let directives = match format {
        LogFormat::Text => format!("{level},{}=off,{OPS_TARGET}=off", message_trace::TARGET),
        LogFormat::Json => format!("{level},{OPS_TARGET}=off"),
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
    let (ops_layer, ops) = match &telemetry.otlp_endpoint {
        None => (None, None),
        Some(endpoint) => {
            let provider = ops_provider(endpoint, &telemetry.service_name, router_id)?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("bote"))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                .with_level(false)
                .with_filter(Targets::new().with_target(OPS_TARGET, tracing::Level::INFO));
            (Some(layer), Some(provider))
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(ops_layer)
        .try_init()?;
    let exporter = match &telemetry.otlp_endpoint {
        None => None,
        Some(endpoint) => Some(SpanExporter::start(
            endpoint,
            &telemetry.service_name,
            router_id,
        )?),
    };
    if exporter.is_some() {
        message_trace::enable(telemetry.sampling_ratio, format == LogFormat::Json);
    }
    Ok(Telemetry { exporter, ops })
}

/// The OpenTelemetry SDK pipeline of the operation spans: a batch
/// processor exporting through `opentelemetry-otlp` (gRPC) to `endpoint`.
/// Every operation span is kept (they are few; sampling is for messages).
fn ops_provider(
    endpoint: &str,
    service_name: &str,
    router_id: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| TelemetryError::OpsExporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(OPS_EXPORT_INTERVAL)
                .build(),
        )
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(opentelemetry::KeyValue::new(
            "bote.router.id",
            router_id.to_owned(),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(batch)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource)
        .build())
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
    use opentelemetry::trace::{SpanId, TraceId};
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
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .event_format(WithTraceIds(tracing_subscriber::fmt::format().json()))
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new()),
        );
        let (trace_id, span_id) = (
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("delivery");
            record_ids(&span, trace_id, span_id);
            span.in_scope(|| tracing::info!(outcome = "accepted", "delivery settled"));
        });
        let (trace_id, span_id) = (trace_id.to_string(), span_id.to_string());
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

//! The server's logs and traces: one `tracing` subscriber with a log layer (JSON or pretty,
//! on stderr) and, when a collector is named, an OpenTelemetry layer that exports every span
//! over OTLP (HTTP/protobuf or gRPC). The libraries only open spans and log events; this is
//! the one place that decides where they go.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::{LogFormat, OtlpProtocol};

/// Where traces go: an OTLP collector's base address (`http://host:4318` for HTTP, the
/// `/v1/traces` path is added; `http://host:4317` for gRPC).
pub struct Otlp {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] sends the spans still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter. With gRPC the async runtime must still be running.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
                eprintln!("warning: sending the last traces: {e}");
            }
        }
    }
}

/// Installs the subscriber. `RUST_LOG` chooses which log lines (default `info`), `format`
/// how: in JSON each line is one object with the event's fields at the top and, for a line
/// logged while a request ran, the request's id, method and path under `span`. Traces take
/// every span at `info` and above, whatever `RUST_LOG` says, so a trace is whole, and the
/// engine's per-token spans (`debug`: with no collector they are never made).
///
/// Call it inside the async runtime when exporting over gRPC: its connection runs there.
pub fn init(format: LogFormat, otlp: Option<Otlp>) -> Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().or_else(|e| match std::env::var_os("RUST_LOG") {
            Some(_) => Err(anyhow!("RUST_LOG: {e}")),
            None => Ok(EnvFilter::new("info")),
        })?;
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => logs.pretty().with_filter(filter).boxed(),
    };
    let provider = otlp.map(tracer_provider).transpose()?;
    let traces = provider.as_ref().map(|provider| {
        // A caller's `traceparent` header is how a request joins the caller's trace.
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("symphony"))
            .with_location(false)
            .with_threads(false)
            .with_filter(
                Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target("symphony_engine", LevelFilter::DEBUG),
            )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .map_err(|e| anyhow!("starting the log: {e}"))?;
    Ok(Telemetry { provider })
}

fn tracer_provider(otlp: Otlp) -> Result<SdkTracerProvider> {
    let base = otlp.endpoint.trim_end_matches('/');
    let exporter = match otlp.protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(UreqClient::new())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{base}/v1/traces"))
            .build(),
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(Protocol::Grpc)
            .with_endpoint(base)
            .build(),
    }
    .with_context(|| format!("--otlp-endpoint {}", otlp.endpoint))?;
    let resource = Resource::builder()
        .with_service_name("symphony")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// OTLP/HTTP over the HTTP client Symphony already carries (rustls for `https://`
/// collectors). The batch exporter calls it from its own thread, so blocking there is fine.
#[derive(Debug)]
struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    fn new() -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            // A collector's 4xx/5xx comes back as a response for the exporter to judge.
            .http_status_as_error(false)
            .build()
            .into();
        Self { agent }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for UreqClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let (parts, body) = request.into_parts();
        let request = ureq::http::Request::from_parts(parts, body.to_vec());
        let mut response = self.agent.run(request)?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(4 << 20)
            .read_to_vec()?;
        let (parts, _) = response.into_parts();
        Ok(opentelemetry_http::Response::from_parts(
            parts,
            bytes.into(),
        ))
    }
}

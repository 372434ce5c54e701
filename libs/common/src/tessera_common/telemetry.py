"""OpenTelemetry wiring: traces (OTLP when configured), Prometheus metrics, and scrubbing.

SRE follows one request from the phone through the gateway, over Kafka, into every
consumer in one trace; the trace context crosses Kafka in message headers (FastStream's
``KafkaTelemetryMiddleware`` writes and reads W3C ``traceparent``). What a span must
never carry (DESIGN.md §1): personal data, tokens, answer text, full IP addresses.
So HTTP spans get a sanitised path and a truncated client address, and asyncpg spans
carry the parameterised statement (placeholders, never the values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SimpleSpanProcessor

from tessera_common.netaddr import truncate_ip

_LITERAL_SEGMENT = re.compile(r"^[a-z][a-z-]{0,23}$")
_PATH_ATTRIBUTES = ("http.target", "url.path", "http.url", "url.full", "url.query", "http.route")
_CLIENT_ATTRIBUTES = ("net.peer.ip", "client.address", "net.sock.peer.addr", "network.peer.address")
_DROPPED_ATTRIBUTES = ("http.user_agent", "user_agent.original", "net.peer.port", "client.port")


def sanitise_path(path: str) -> str:
    """Keep the route's literal words, replace every identifier or secret by ``:id``.

    Codes, tenant and participant IDs never reach a span this way, whatever route
    is added later: only lower-case words (``v1`` aside) survive."""
    path = path.split("?", 1)[0]
    kept = [
        segment if (not segment or segment == "v1" or _LITERAL_SEGMENT.match(segment)) else ":id"
        for segment in path.split("/")
    ]
    return "/".join(kept)


def _scrub_server_span(span: trace.Span, scope: dict[str, Any]) -> None:
    if not span.is_recording():
        return
    path = sanitise_path(scope.get("path", ""))
    for name in _PATH_ATTRIBUTES:
        span.set_attribute(name, path)
    client = scope.get("client")
    truncated = truncate_ip(client[0]) if client else ""
    for name in _CLIENT_ATTRIBUTES:
        span.set_attribute(name, truncated)
    for name in _DROPPED_ATTRIBUTES:
        span.set_attribute(name, "")


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def instrument_app(self, app: Any) -> None:
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            server_request_hook=_scrub_server_span,
            excluded_urls="healthz,readyz,metrics",
            exclude_spans=["receive", "send"],
        )

    def shutdown(self) -> None:
        """Flush this app's spans. The meter provider is the process's (one Prometheus
        registry per process) and ends with the process."""
        self.tracer_provider.shutdown()


_asyncpg_instrumented = False
_prometheus_reader: PrometheusMetricReader | None = None


def setup_telemetry(
    service_name: str,
    otlp_endpoint: str | None,
    extra_exporter: SpanExporter | None = None,
) -> Telemetry:
    """One tracer and meter provider per service app, never global state set at import.

    ``extra_exporter`` lets tests read the spans a real request produced."""
    global _asyncpg_instrumented, _prometheus_reader
    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(resource=resource)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if extra_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(extra_exporter))

    # The Prometheus reader registers with prometheus_client's global registry, which
    # allows one per process; a second app in the same process (tests) shares it.
    if _prometheus_reader is None:
        _prometheus_reader = PrometheusMetricReader()
        meter_provider = MeterProvider(resource=resource, metric_readers=[_prometheus_reader])
        metrics.set_meter_provider(meter_provider)
    meter_provider = metrics.get_meter_provider()  # type: ignore[assignment]

    if not _asyncpg_instrumented:
        # capture_parameters stays False: the parameters are the data. Every statement
        # is parameterised, so its text holds placeholders only. The instrumentation is
        # process-wide: the first app's provider gets it, the only app in a deployed process.
        AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=tracer_provider)
        _asyncpg_instrumented = True
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)  # type: ignore[arg-type]

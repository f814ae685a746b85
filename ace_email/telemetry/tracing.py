"""Opt-in OpenTelemetry traces through Temporal's contrib TracingInterceptor: every workflow
start, signal, update and activity becomes a span, and a contact's spans hang below the poll that
found its email (the poll loop starts the contact as a child, which carries the trace on). Spans
go over OTLP/HTTP to `[tracing] otlp_endpoint`. Spans carry ids and types, never payloads."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from ace_email.config.observability import TracingSettings


@dataclass
class Tracing:
    """The interceptors to connect with, and the provider to flush at the end."""

    interceptors: list[Interceptor] = field(default_factory=list)
    provider: TracerProvider | None = None

    def shutdown(self) -> None:
        """Send what is still buffered; call once at exit."""
        if self.provider is not None:
            self.provider.shutdown()


def tracing(settings: TracingSettings, exporter: SpanExporter | None = None) -> Tracing:
    """No interceptors unless `otlp_endpoint` is set (or a test gives its own exporter)."""
    if exporter is None:
        if settings.otlp_endpoint is None:
            return Tracing()
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, headers=settings.headers())
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    interceptor = TracingInterceptor(
        provider.get_tracer("ace-email"), always_create_workflow_spans=True
    )
    return Tracing(interceptors=[interceptor], provider=provider)

"""How operators watch ace-email: the worker's Prometheus endpoint (`[metrics]`) and the
OpenTelemetry traces it may export (`[tracing]`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from ace_email.config.base import ReadableFile, Section
from ace_email.config.secrets import read_secret, sources_given


def _host_port(value: str, key: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{key} {value!r} is not HOST:PORT (e.g. 127.0.0.1:9464)")
    return host.strip("[]"), int(port)


class MetricsSettings(Section):
    """`[metrics]`: where the worker serves its Prometheus metrics, and how often it samples
    the state gauges (queues, agents, mailboxes) that every worker reports alike."""

    prometheus_listen: str | None = Field(
        default=None, description="HOST:PORT of the worker's /metrics; none = no endpoint"
    )
    sample_seconds: float = Field(default=10.0, ge=1.0, le=3600.0)

    @model_validator(mode="after")
    def _listen_is_host_port(self) -> Self:
        if self.prometheus_listen is not None:
            _host_port(self.prometheus_listen, "prometheus_listen")
        return self


class TracingSettings(Section):
    """`[tracing]`: opt-in OpenTelemetry traces of every workflow and activity, exported over
    OTLP/HTTP (e.g. to an OpenTelemetry Collector, Jaeger or Tempo)."""

    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces; none = off",
        pattern=r"^https?://",
    )
    service_name: str = Field(default="ace-email", min_length=1)
    headers_env: str | None = Field(
        default=None, description="an environment variable holding OTLP headers (k=v,k=v)"
    )
    headers_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_headers_source(self) -> Self:
        sources_given(self, "headers")
        return self

    def headers(self) -> dict[str, str]:
        """The exporter's headers (an API key of the tracing backend, say), read now."""
        text = read_secret(self, "headers", "tracing.") or ""
        pairs = (item.partition("=") for item in text.split(",") if item.strip())
        return {key.strip(): value.strip() for key, _, value in pairs}

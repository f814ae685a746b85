"""The worker's Prometheus endpoint: the Temporal SDK runtime's own exporter serves the SDK's
metrics and ace-email's beside them (counters from workflows and activities, gauges from the
sampler), at `[metrics] prometheus_listen` under /metrics, in Prometheus' naming (counters end
in `_total`, durations are seconds)."""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from ace_email.config.base import ConfigError


def prometheus_runtime(listen: str) -> Runtime:
    """A Temporal runtime whose metrics are served at `listen`; ConfigError if it cannot be."""
    try:
        return Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=listen,
                    counters_total_suffix=True,
                    unit_suffix=True,
                    durations_as_seconds=True,
                ),
                global_tags={"service_name": "ace-email"},
                attach_service_name=False,
            )
        )
    except ValueError as exc:
        reason = str(exc).removeprefix("Failed starting Prometheus exporter: ")
        raise ConfigError(
            f"metrics.prometheus_listen: cannot serve metrics at {listen}: {reason} "
            "(another worker on this machine needs its own port)"
        ) from None

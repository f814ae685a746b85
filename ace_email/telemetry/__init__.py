"""How ace-email is watched: the worker's Prometheus metrics (Temporal's SDK metrics and
ace-email's own, sampled state gauges included), OpenTelemetry traces, and JSON logs."""

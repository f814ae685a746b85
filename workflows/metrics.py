"""Counting from workflow code: once per step that has succeeded, through the worker's metric
meter, which the SDK silences while a workflow replays. So an activity's retries, a worker's
crash and a replayed history never count an email twice (see ace_email/contracts/metrics.py)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts.metrics import Metric


def count(metric: Metric, **labels: str) -> None:
    """Add one to `metric` with these labels (each must be one of the metric's labels)."""
    assert set(labels) <= set(metric.labels), f"{metric.name}: unknown labels {labels}"
    workflow.metric_meter().create_counter(metric.name, metric.description).add(1, labels)

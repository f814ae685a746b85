"""Reading a worker's Prometheus endpoint in tests: every sample by name and labels."""

from __future__ import annotations

import re
import urllib.request

from ace_email.contracts import metrics

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Temporal SDK metrics that tests/e2e/test_metrics.py sees on a worker after real traffic; with
# ace-email's own (ace_email.contracts.metrics), these are all deploy/ may use.
SDK_METRICS = (
    "temporal_workflow_task_execution_latency_seconds",
    "temporal_workflow_task_schedule_to_start_latency_seconds",
    "temporal_activity_execution_latency_seconds",
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_activity_task_received_total",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_request_total",
    "temporal_request_failure_total",
    "temporal_workflow_completed_total",
    "temporal_num_pollers",
    "temporal_sticky_cache_size",
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def ace_metric_names() -> list[str]:
    """ace-email's own metrics as Prometheus shows them (counters with `_total`)."""
    counters = [f"{metric.name}_total" for metric in metrics.COUNTERS]
    return counters + [metric.name for metric in metrics.GAUGES]


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
    return text


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None:
            continue
        labels = frozenset(_LABEL.findall(match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


def scrape(port: int) -> Samples:
    return parse(scrape_text(port))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every sample whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def present(samples: Samples, name: str) -> bool:
    """A sample of `name` (or of the histogram `name`) is there."""
    names = {name, *(name + suffix for suffix in HISTOGRAM_SUFFIXES)}
    return any(n in names for n, _ in samples)

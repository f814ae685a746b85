"""deploy/: the alert rules and the dashboard are valid, and every metric they use is one that
tests/e2e/test_metrics.py finds on a worker's endpoint after real traffic."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.metrics_support import HISTOGRAM_SUFFIXES, SDK_METRICS, ace_metric_names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\b((?:ace|temporal)_[a-z_]+)\b")
PROVEN = {*ace_metric_names(), *SDK_METRICS}


def _metrics_in(expression: str) -> set[str]:
    names = set()
    for name in METRIC.findall(expression):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in PROVEN:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_every_alert_uses_proven_metrics_and_says_what_to_do() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "ace-email-alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    names = {rule["alert"] for rule in alerts}
    assert {
        "AceMailboxFailing",
        "AceMailboxLagging",
        "AceQueueOldestWaitOverLimit",
        "AceAutoRepliesRefused",
        "AceMailErrors",
        "AceWorkerDown",
    } <= names
    for rule in alerts:
        used = _metrics_in(rule["expr"])
        assert used <= PROVEN, (rule["alert"], used - PROVEN)
        assert rule["labels"]["severity"] and rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])
    return [panel for panel in panels if panel.get("type") != "row"]


def test_every_dashboard_panel_is_tied_to_a_proven_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "ace-email-dashboard.json").read_text())
    panels = _panels(dashboard)
    assert len(panels) >= 10
    for panel in panels:
        used: set[str] = set()
        for target in panel.get("targets", []):
            used |= _metrics_in(target["expr"])
        assert used, f"panel {panel['title']!r} uses no metric"
        assert used <= PROVEN, (panel["title"], used - PROVEN)

"""The state gauges: how many contacts wait in each queue and for how long, how many agents are
ready and busy, each mailbox's lag and health. Sampled every `[metrics] sample_seconds` from the
queues', agents' and mailboxes' own workflows (the queries `starter.py queues`, `agents` and
`accounts` use); every worker reports the same values, so dashboards take `max by (...)`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.service import RPCError

from ace_email.config.settings import Settings
from ace_email.contracts import metrics
from ace_email.contracts.queues import Presence
from ace_email.operations import agents_queues, mailboxes
from ace_email.operations.common import Refused

log = logging.getLogger(__name__)


class StateGauges:
    """The gauges of ace_email.contracts.metrics.GAUGES on one metric meter."""

    def __init__(self, meter: MetricMeter) -> None:
        self._gauges = {
            metric.name: meter.create_gauge_float(metric.name, metric.description)
            for metric in metrics.GAUGES
        }

    def set(self, metric: metrics.Metric, value: float, **labels: str) -> None:
        self._gauges[metric.name].set(value, labels)

    def record(
        self,
        settings: Settings,
        queues: list[dict[str, Any]],
        agents: list[dict[str, Any]],
        accounts: list[dict[str, Any]],
    ) -> None:
        """Set every gauge from the rows of `starter.py queues`, `agents` and `accounts`."""
        for row in queues:
            queue = row["queue"]
            self.set(metrics.CONTACTS_WAITING, row["waiting"], queue=queue)
            self.set(metrics.OLDEST_WAIT, row["oldest_wait_seconds"] or 0.0, queue=queue)
            limit = settings.queue_settings(queue).answer_within_seconds()
            self.set(metrics.QUEUE_ANSWER_WITHIN, limit or 0.0, queue=queue)
        ready = sum(1 for row in agents if row["presence"] == Presence.READY.value)
        busy = sum(1 for row in agents if row["load"] > 0)
        self.set(metrics.AGENTS_READY, ready)
        self.set(metrics.AGENTS_BUSY, busy)
        for row in accounts:
            account = row["account"]
            self.set(
                metrics.MAILBOX_HEALTHY,
                1.0 if row["health"] in ("ok", "throttled") else 0.0,
                account=account,
            )
            self.set(metrics.MAILBOX_LAG, row["lag_seconds"] or 0.0, account=account)
            self.set(metrics.MAILBOX_WAITING, row["waiting"] or 0, account=account)
            throttled = 1.0 if row["health"] == "throttled" else 0.0
            self.set(metrics.MAILBOX_THROTTLED, throttled, account=account)


async def sample_forever(client: Client, settings: Settings, gauges: StateGauges) -> None:
    """Sample until cancelled; a failed sample is logged once per kind of failure, not fatal."""
    last_problem = ""
    while True:
        try:
            queues, agents, accounts = await asyncio.gather(
                agents_queues.queues(client, settings),
                agents_queues.agents(client, settings),
                mailboxes.accounts(client, settings),
            )
            gauges.record(settings, queues, agents, accounts)
            last_problem = ""
        except (Refused, RPCError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            if problem != last_problem:
                log.warning("state gauges not sampled: %s", problem)
            last_problem = problem
        await asyncio.sleep(settings.metrics.sample_seconds)

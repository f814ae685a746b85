"""Routing throughput and latency: 10,000 contacts waiting in one queue, 200 agents.

    .venv/bin/python benchmarks/routing.py [--contacts 10000] [--agents 200] [--measure 3000]

Starts its own Temporal dev server (tuned as in `dev.py run`), an SMTP sink and two workers
on free loopback ports: ace-email's `worker.py` in its own process, as operators run it
(queue and agent workflows, routing activities), and one in this process for the contacts.
The contacts are stand-ins (benchmarks/stand_in_contact.py, run without the sandbox to keep
them cheap) that speak the real routing protocol and deliver with one SMTP send each, so
what is measured is the router: QueueWorkflow, AgentWorkflow and the activities between them.

1. Enqueue: `--contacts` contacts enter one queue; how fast the queue takes them.
2. Routing: `--agents` agents (capacity 1, email) become ready at once; each contact is held
   `--hold` seconds after delivery, then closed, which frees its agent for the next. Prints
   assignment throughput over `--measure` contacts, and agent-ready -> delivered latency
   (from the agent becoming free, by presence or by a close, to its next contact delivered).
3. Baseline, same run: `--measure` more stand-ins given to the same agents directly by the
   benchmark (one update each, 200 at a time), no queue or agent workflow in between.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace_email import ids
from ace_email import search_attributes as sa
from ace_email.devstack import TEMPORAL_TUNING
from ace_email.models import (
    Presence,
    QueueInput,
    QueuePolicy,
    RouteRequest,
    Waiting,
    pack_waiting,
)
from ace_email.routing_commands import agents as agent_rows
from ace_email.routing_commands import queue_status, set_presence
from ace_email.settings import Settings
from benchmarks.stand_in_contact import (
    StandInContact,
    StandInInput,
    StandInResult,
    send_to_agent,
)
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]
ROUTING_QUEUE = "ace-email-bench"
CONTACT_QUEUE = "bench-contacts"
QUEUE = "bench"
BLOB_LIMIT = 2 * 1024 * 1024  # Temporal's default limit on one payload (a CAN input)


class Sink:
    """Counts what arrives by SMTP."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def settings_for(address: str, agents: int) -> Settings:
    return Settings.model_validate(
        {
            "temporal": {"address": address, "task_queue": ROUTING_QUEUE},
            "queues": [{"name": QUEUE}],
            "routing": {"offer_timeout_seconds": 600},
            "agents": [
                {"id": f"agent-{n:03}", "email": f"agent{n:03}@example.com", "queues": [QUEUE]}
                for n in range(agents)
            ],
        }
    )


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def describe(label: str, samples: list[float]) -> str:
    if not samples:
        return f"{label}: no samples"
    return (
        f"{label}: n={len(samples)}  p50={statistics.median(samples) * 1000:.0f} ms  "
        f"p95={percentile(samples, 0.95) * 1000:.0f} ms  max={max(samples) * 1000:.0f} ms"
    )


async def start_contacts(
    client: Client, count: int, *, queue: str | None, smtp_port: int, hold: float, tag: str
) -> list[str]:
    ids_: list[str] = [f"standin-{tag}-{n:05}" for n in range(count)]
    turns = asyncio.Semaphore(64)

    async def start(contact_id: str, n: int) -> None:
        async with turns:
            await client.start_workflow(
                StandInContact.run,
                StandInInput(
                    contact_id=contact_id,
                    routing_task_queue=ROUTING_QUEUE,
                    queue=queue,
                    priority=n % 3,
                    hold_seconds=hold,
                    smtp_port=smtp_port,
                ),
                id=contact_id,
                task_queue=CONTACT_QUEUE,
            )

    await asyncio.gather(*(start(c, n) for n, c in enumerate(ids_)))
    return ids_


async def results(client: Client, contact_ids: list[str]) -> list[StandInResult]:
    turns = asyncio.Semaphore(64)

    async def one(contact_id: str) -> StandInResult:
        async with turns:
            handle: WorkflowHandle[Any, StandInResult] = client.get_workflow_handle(
                contact_id, result_type=StandInResult
            )
            return await handle.result()

    return list(await asyncio.gather(*(one(c) for c in contact_ids)))


async def delivered_ids(client: Client, prefix: str) -> list[str]:
    query = 'WorkflowType="StandInContact" AND ExecutionStatus="Completed"'
    return [e.id async for e in client.list_workflows(query) if e.id.startswith(prefix)]


def state_bytes_per_contact(count: int = 10_000) -> tuple[float, float]:
    """How big a queue's continue-as-new input grows per waiting contact: plain, and packed
    as the queue carries it."""
    now = datetime.now(UTC)
    entries = [
        Waiting(
            contact_id=f"contact-support-{uuid.uuid4().hex[:20]}",
            round=1 + n % 3,
            priority=n % 3,
            waiting_since=now - timedelta(seconds=n * 1.7),
            entered_at=now - timedelta(seconds=n * 1.3),
            skills=["invoices"] if n % 4 == 0 else [],
        )
        for n in range(count)
    ]
    policy = QueuePolicy(name="support")
    plain = QueueInput(policy=policy, waiting=entries)
    packed = QueueInput(policy=policy, waiting_packed=pack_waiting(entries))
    convert = pydantic_data_converter.payload_converter.to_payloads
    return (
        len(convert([plain])[0].data) / count,
        len(convert([packed])[0].data) / count,
    )


def write_config(path: Path, settings: Settings) -> Path:
    """The benchmark's configuration as a file for `worker.py`."""
    lines = [
        "[temporal]",
        f'address = "{settings.temporal.address}"',
        f'task_queue = "{settings.temporal.task_queue}"',
        "[routing]",
        f"offer_timeout_seconds = {settings.routing.offer_timeout_seconds}",
        "[[queues]]",
        f'name = "{QUEUE}"',
    ]
    for agent in settings.agents:
        lines += ["[[agents]]", f'id = "{agent.id}"', f'email = "{agent.email}"']
        lines.append(f'queues = ["{QUEUE}"]')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def main(args: argparse.Namespace) -> None:
    temporal_cli = Path(sys.executable).parent / "temporal"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_extra_args=TEMPORAL_TUNING,
        ip="127.0.0.1",
    )
    client = env.client
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    settings = settings_for(client.service_client.config.target_host, args.agents)
    tag = uuid.uuid4().hex[:6]
    report: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "bench.toml", settings)
        worker = subprocess.Popen(
            [sys.executable, "worker.py", "--config", str(config), "--log-level", "WARNING"],
            cwd=ROOT,
        )
        try:
            contacts_worker = Worker(
                client,
                task_queue=CONTACT_QUEUE,
                workflows=[StandInContact],
                activities=[send_to_agent],
                max_cached_workflows=args.contacts + args.measure + 1000,
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
            async with contacts_worker:
                report += await run_phases(client, settings, args, smtp_port, tag)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            controller.stop()
            await env.shutdown()
    print(
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}; "
        f"Temporal dev server in memory, tuned as in dev.py run"
    )
    print("\n".join(report))
    print(f"SMTP sends received by the sink: {sink.received}")


async def run_phases(
    client: Client, settings: Settings, args: argparse.Namespace, smtp_port: int, tag: str
) -> list[str]:
    report: list[str] = []
    began = time.monotonic()
    await start_contacts(
        client, args.contacts, queue=QUEUE, smtp_port=smtp_port, hold=args.hold, tag=f"r{tag}"
    )
    started = time.monotonic() - began
    while (await queue_status(client, QUEUE)).waiting < args.contacts:
        await asyncio.sleep(0.5)
    queued = time.monotonic() - began
    runs = [e async for e in client.list_workflows(f'WorkflowId="{ids.queue_workflow_id(QUEUE)}"')]
    report.append(
        f"enqueue: {args.contacts} contacts started in {started:.1f} s, all waiting in one queue "
        f"after {queued:.1f} s: {args.contacts / queued:.0f} enqueues/s "
        f"(queue workflow runs so far: {len(runs)})"
    )

    ready_at: dict[str, datetime] = {}

    async def ready(agent_id: str) -> None:
        ready_at[agent_id] = datetime.now(UTC)
        await set_presence(client, settings, agent_id, Presence.READY)

    began = time.monotonic()
    await asyncio.gather(*(ready(a.id) for a in settings.agents))
    while len(done := await delivered_ids(client, f"standin-r{tag}")) < args.measure:
        await asyncio.sleep(1.0)
    elapsed = time.monotonic() - began
    finished = await results(client, done[: args.measure])
    latencies = ready_to_delivered(finished, ready_at)
    first = min(ready_at.values())
    last = max(r.delivered_at for r in finished)
    report.append(
        f"routing: {len(finished)} contacts routed and delivered in "
        f"{(last - first).total_seconds():.1f} s by {args.agents} agents (capacity 1, hold "
        f"{args.hold:g} s): {len(finished) / (last - first).total_seconds():.1f} assignments/s "
        f"(wall {elapsed:.1f} s)"
    )
    report.append(describe("routing: agent ready -> delivered", latencies))
    await asyncio.gather(
        *(set_presence(client, settings, a.id, Presence.OFFLINE) for a in settings.agents)
    )
    rows = await agent_rows(client, settings)
    while any(r["load"] for r in rows):
        await asyncio.sleep(1.0)
        rows = await agent_rows(client, settings)
    over = [r for r in rows if r["max_load"] > r["capacity"]]
    report.append(f"agents ever over capacity: {len(over)} (all signed out before the baseline)")
    left = (await queue_status(client, QUEUE)).waiting
    runs = [e async for e in client.list_workflows(f'WorkflowId="{ids.queue_workflow_id(QUEUE)}"')]
    report.append(
        f"queue: {left} still waiting; queue workflow runs (continue-as-new): {len(runs)}"
    )

    baseline_ids = await start_contacts(
        client, args.measure, queue=None, smtp_port=smtp_port, hold=args.hold, tag=f"b{tag}"
    )
    await asyncio.sleep(2.0)
    base_latencies, base_elapsed = await direct_assignments(client, settings, baseline_ids)
    report.append(
        f"baseline: {len(baseline_ids)} contacts given directly to {args.agents} agents in "
        f"{base_elapsed:.1f} s: {len(baseline_ids) / base_elapsed:.1f} assignments/s"
    )
    report.append(describe("baseline: assignment -> delivered", base_latencies))
    plain, packed = state_bytes_per_contact()
    report.append(
        f"queue state carried through continue-as-new: {packed:.0f} bytes per waiting contact "
        f"packed ({plain:.0f} plain): {BLOB_LIMIT / packed:,.0f} waiting contacts fit in "
        f"Temporal's 2 MiB payload limit ({BLOB_LIMIT / plain:,.0f} unpacked)"
    )
    return report


def ready_to_delivered(finished: list[StandInResult], ready_at: dict[str, datetime]) -> list[float]:
    """From the moment each agent was free (ready, or its previous contact closed) to its next
    contact delivered."""
    by_agent: defaultdict[str, list[StandInResult]] = defaultdict(list)
    for result in finished:
        by_agent[result.agent_id].append(result)
    samples: list[float] = []
    for agent_id, done in by_agent.items():
        free = ready_at[agent_id]
        for result in sorted(done, key=lambda r: r.delivered_at):
            samples.append((result.delivered_at - free).total_seconds())
            free = result.released_at
    return samples


async def direct_assignments(
    client: Client, settings: Settings, contact_ids: list[str]
) -> tuple[list[float], float]:
    pending = list(reversed(contact_ids))
    latencies: list[float] = []

    async def agent_at_work(agent_id: str, email: str | None) -> None:
        while pending:
            contact_id = pending.pop()
            given = datetime.now(UTC)
            handle: WorkflowHandle[Any, StandInResult] = client.get_workflow_handle(
                contact_id, result_type=StandInResult
            )
            await handle.execute_update(
                "route", RouteRequest(agent_id=agent_id, agent_email=email, round=1)
            )
            result = await handle.result()
            latencies.append((result.delivered_at - given).total_seconds())

    began = time.monotonic()
    await asyncio.gather(*(agent_at_work(a.id, a.email) for a in settings.agents))
    return latencies, time.monotonic() - began


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--measure", type=int, default=3_000)
    parser.add_argument("--hold", type=float, default=0.5)
    asyncio.run(main(parser.parse_args()))

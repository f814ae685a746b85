"""Routing throughput and latency: 10,000 contacts waiting in one queue, 200 agents.

    .venv/bin/python benchmarks/routing.py [--contacts 10000] [--agents 200] [--measure 3000]

Starts its own Temporal dev server (tuned as in `dev.py run`), an SMTP sink and two workers
on free loopback ports: ace-email's `worker.py` in its own process, as operators run it
(queue and agent workflows, routing activities), and one in this process for the contacts.
The contacts are stand-ins (benchmarks/stand_in_contact.py, run without the sandbox to keep
them cheap) that speak the real routing protocol and deliver with one SMTP send each, so
what is measured is the router: QueueWorkflow, AgentWorkflow and the messages between them.

1. Intake: `--signals` entries sent straight to one queue workflow, one and 50 per signal:
   the most one queue takes.
2. Enqueue: `--contacts` contacts are created and wait in one queue.
3. Throughput: `--agents` agents (capacity 1, with an email address) become ready at once;
   each contact is closed as soon as it is delivered, which frees its agent for the next.
   Assignments per second over `--measure` contacts, and the latency from an agent being
   free (ready, or its last contact closed) to its next contact delivered.
4. Agent ready -> delivered: `--agents` other agents become ready one at a time,
   `--spacing` seconds apart, each to one contact waiting in a queue of its own.
Baselines, same run: the same stand-ins given to the same agents directly by the benchmark
(one update each, no queue or agent workflow), for 3 at once and for 4 spaced out.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace_email.config.queues import AgentSettings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.contact import RouteRequest
from ace_email.contracts.queues import (
    Presence,
    QueueInput,
    QueuePolicy,
    Waiting,
    WaitingBatch,
    pack_waiting,
)
from ace_email.exiting import run_then_exit
from ace_email.operations.agents_queues import agents as agent_rows
from ace_email.operations.agents_queues import queue_status, set_presence
from ace_email.operations.common import Refused
from benchmarks.dev_server import start_dev_server
from benchmarks.stand_in_contact import (
    Delivery,
    StandInContact,
    StandInInput,
    StandInResult,
    send_to_agent,
)
from tests.support import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
ROUTING_QUEUE = "ace-email-bench"
CONTACT_QUEUE = "bench-contacts"
BUSY, CALM, INTAKE = "bench", "bench-calm", "bench-intake"
BLOB_LIMIT = 2 * 1024 * 1024  # Temporal's default limit on one payload (a CAN input)
LONG_HOLD = 3600.0


class Sink:
    """Counts what arrives by SMTP."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def settings_for(address: str, agents: int) -> Settings:
    """`agents` who serve the busy queue and as many who serve the calm one."""

    def group(prefix: str, queue: str) -> list[dict[str, Any]]:
        return [
            {"id": f"{prefix}-{n:03}", "email": f"{prefix}{n:03}@example.com", "queues": [queue]}
            for n in range(agents)
        ]

    return Settings.model_validate(
        {
            "temporal": {"address": address, "task_queue": ROUTING_QUEUE},
            "queues": [{"name": BUSY}, {"name": CALM}],
            "routing": {"offer_timeout_seconds": 600},
            "agents": group("agent", BUSY) + group("calm", CALM),
        }
    )


def write_config(path: Path, settings: Settings) -> Path:
    """The benchmark's configuration as a file for `worker.py`."""
    lines = [
        "[temporal]",
        f'address = "{settings.temporal.address}"',
        f'task_queue = "{settings.temporal.task_queue}"',
        "[routing]",
        f"offer_timeout_seconds = {settings.routing.offer_timeout_seconds}",
    ]
    for queue in settings.queues:
        lines += ["[[queues]]", f'name = "{queue.name}"']
    for agent in settings.agents:
        lines += ["[[agents]]", f'id = "{agent.id}"', f'email = "{agent.email}"']
        lines.append(f'queues = ["{agent.queues[0]}"]')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


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
    contact_ids = [f"standin-{tag}-{n:05}" for n in range(count)]
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

    await asyncio.gather(*(start(c, n) for n, c in enumerate(contact_ids)))
    return contact_ids


async def delivered(client: Client, contact_ids: list[str]) -> dict[str, StandInResult]:
    """The results of those stand-ins that have been delivered (asked of each, in turn)."""
    turns = asyncio.Semaphore(64)
    found: dict[str, StandInResult] = {}

    async def one(contact_id: str) -> None:
        async with turns:
            handle = client.get_workflow_handle(contact_id)
            state = await handle.query("delivery", result_type=Delivery)
            if state.result is not None:
                found[contact_id] = state.result

    await asyncio.gather(*(one(c) for c in contact_ids))
    return found


async def finished(client: Client, prefix: str) -> list[str]:
    query = 'WorkflowType="StandInContact" AND ExecutionStatus="Completed"'
    return [e.id async for e in client.list_workflows(query) if e.id.startswith(prefix)]


async def results(client: Client, contact_ids: list[str]) -> list[StandInResult]:
    turns = asyncio.Semaphore(64)

    async def one(contact_id: str) -> StandInResult:
        async with turns:
            handle: WorkflowHandle[Any, StandInResult] = client.get_workflow_handle(
                contact_id, result_type=StandInResult
            )
            return await handle.result()

    return list(await asyncio.gather(*(one(c) for c in contact_ids)))


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


async def signal_entries(
    handle: WorkflowHandle[Any, Any], turns: asyncio.Semaphore, numbers: range
) -> None:
    now = datetime.now(UTC)
    batch = WaitingBatch(
        entries=[
            Waiting(
                contact_id=f"contact-intake-{n:020x}",
                round=1,
                priority=n % 3,
                waiting_since=now,
                entered_at=now,
            )
            for n in numbers
        ]
    )
    async with turns:
        await handle.signal("enqueue_many", batch)


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """Ask again what a starved dev server did not answer in time."""
    while True:
        try:
            return await call()
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError, Refused):
            await asyncio.sleep(1.0)


async def presence(client: Client, settings: Settings, agent_id: str, state: Presence) -> None:
    await patiently(lambda: set_presence(client, settings, agent_id, state))


async def queue_runs(client: Client, queue: str) -> int:
    query = f'WorkflowId="{ids.queue_workflow_id(queue)}"'
    return len([e async for e in client.list_workflows(query)])


async def wait_for_waiting(client: Client, queue: str, count: int) -> None:
    while True:
        try:
            if (await queue_status(client, queue)).waiting >= count:
                return
        except RPCError:  # a query can time out while the worker is busiest
            pass
        await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> None:
    env = await start_dev_server()
    client = env.client
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    settings = settings_for(client.service_client.config.target_host, args.agents)
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
                max_cached_workflows=args.contacts + args.measure + 4 * args.agents + 1000,
                workflow_runner=UnsandboxedWorkflowRunner(),
            )
            async with contacts_worker:
                bench = Bench(client, settings, args, smtp_port, report)
                await bench.run()
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            controller.stop()
            await env.shutdown()
    print(
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}; "
        "Temporal dev server in memory, tuned as in dev.py run"
    )
    print("\n".join(report))
    print(f"SMTP sends received by the sink: {sink.received}")


class Bench:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        args: argparse.Namespace,
        smtp_port: int,
        report: list[str],
    ) -> None:
        self.client = client
        self.settings = settings
        self.args = args
        self.smtp_port = smtp_port
        self.report = report
        self.tag = uuid.uuid4().hex[:6]
        self.busy = [a for a in settings.agents if a.queues == [BUSY]]
        self.calm = [a for a in settings.agents if a.queues == [CALM]]

    def say(self, line: str) -> None:
        self.report.append(line)
        print(line, flush=True)

    async def run(self) -> None:
        await self.intake()
        await self.enqueue()
        await self.throughput()
        await self.spaced()
        await self.baselines()
        plain, packed = state_bytes_per_contact()
        self.say(
            f"queue state through continue-as-new: {packed:.0f} bytes per waiting contact "
            f"packed ({plain:.0f} plain): {BLOB_LIMIT / packed:,.0f} waiting contacts fit in "
            f"Temporal's 2 MiB payload limit ({BLOB_LIMIT / plain:,.0f} unpacked)"
        )

    async def intake(self) -> None:
        """The most one queue workflow takes: entries signalled straight to it, one per
        signal and 50 per signal (as workers send them when many arrive at once)."""
        count = self.args.signals
        for per_signal in (1, 50):
            queue = f"{INTAKE}-{per_signal}"
            handle = await self.client.start_workflow(
                "QueueWorkflow",
                QueueInput(policy=QueuePolicy(name=queue)),
                id=ids.queue_workflow_id(queue),
                task_queue=ROUTING_QUEUE,
            )
            turns = asyncio.Semaphore(32)
            began = time.monotonic()
            await asyncio.gather(
                *(
                    signal_entries(handle, turns, range(n, min(n + per_signal, count)))
                    for n in range(0, count, per_signal)
                )
            )
            await wait_for_waiting(self.client, queue, count)
            took = time.monotonic() - began
            runs = await queue_runs(self.client, queue)
            self.say(
                f"intake: {count} entries into one queue, {per_signal} per signal (32 signals "
                f"at a time): {count / took:,.0f} enqueues/s ({runs} run(s) through "
                "continue-as-new)"
            )

    async def enqueue(self) -> None:
        count = self.args.contacts
        began = time.monotonic()
        self.routed_ids = await start_contacts(
            self.client, count, queue=BUSY, smtp_port=self.smtp_port, hold=0, tag=f"r{self.tag}"
        )
        started = time.monotonic() - began
        await wait_for_waiting(self.client, BUSY, count)
        took = time.monotonic() - began
        runs = await queue_runs(self.client, BUSY)
        self.say(
            f"enqueue: {count} contacts created in {started:.1f} s, all waiting in one queue "
            f"after {took:.1f} s: {count / took:.0f} contacts/s ({runs} queue run(s))"
        )

    async def throughput(self) -> None:
        ready_at: dict[str, datetime] = {}

        turns = asyncio.Semaphore(20)

        async def ready(agent: AgentSettings) -> None:
            async with turns:
                ready_at[agent.id] = datetime.now(UTC)
                await presence(self.client, self.settings, agent.id, Presence.READY)

        await asyncio.gather(*(ready(a) for a in self.busy))
        measure = self.args.measure
        while (
            len(done := await patiently(lambda: finished(self.client, f"standin-r{self.tag}")))
            < measure
        ):
            await asyncio.sleep(1.0)
        outcomes = await results(self.client, done[:measure])
        await self.sign_out(self.busy)
        first = min(ready_at.values())
        span = (max(r.delivered_at for r in outcomes) - first).total_seconds()
        self.say(
            f"throughput: {len(outcomes)} of {self.args.contacts} waiting contacts routed and "
            f"delivered in {span:.1f} s by {len(self.busy)} agents (capacity 1, each contact "
            f"closed when delivered): {len(outcomes) / span:.1f} assignments/s"
        )
        self.say(
            describe("throughput: agent free -> delivered", free_to_delivered(outcomes, ready_at))
        )
        rows = await patiently(lambda: agent_rows(self.client, self.settings))
        over = [r for r in rows if r["max_load"] > r["capacity"]]
        left = (await queue_status(self.client, BUSY)).waiting
        runs = await queue_runs(self.client, BUSY)
        self.say(
            f"throughput: agents ever over capacity: {len(over)}; {left} contacts still "
            f"waiting; {runs} queue run(s)"
        )

    async def sign_out(self, agents: list[AgentSettings]) -> None:
        await asyncio.gather(
            *(presence(self.client, self.settings, a.id, Presence.OFFLINE) for a in agents)
        )
        names = {a.id for a in agents}
        while any(
            r["load"]
            for r in await patiently(lambda: agent_rows(self.client, self.settings))
            if r["id"] in names
        ):
            await asyncio.sleep(1.0)

    async def spaced(self) -> None:
        """Agents ready one at a time, each to a contact waiting for it: the latency alone."""
        contact_ids = await start_contacts(
            self.client,
            len(self.calm),
            queue=CALM,
            smtp_port=self.smtp_port,
            hold=LONG_HOLD,
            tag=f"c{self.tag}",
        )
        await wait_for_waiting(self.client, CALM, len(contact_ids))
        ready_at: dict[str, datetime] = {}
        for agent in self.calm:
            ready_at[agent.id] = datetime.now(UTC)
            await presence(self.client, self.settings, agent.id, Presence.READY)
            await asyncio.sleep(self.args.spacing)
        await asyncio.sleep(5.0)
        outcomes = await delivered(self.client, contact_ids)
        latencies = [
            (r.delivered_at - ready_at[r.agent_id]).total_seconds() for r in outcomes.values()
        ]
        self.say(
            f"agent ready -> delivered: {len(self.calm)} agents ready one every "
            f"{self.args.spacing:g} s, each to a waiting contact"
        )
        self.say(describe("agent ready -> delivered", latencies))

    async def baselines(self) -> None:
        measure = self.args.measure
        contact_ids = await start_contacts(
            self.client, measure, queue=None, smtp_port=self.smtp_port, hold=0, tag=f"b{self.tag}"
        )
        await asyncio.sleep(2.0)
        latencies, took = await direct(self.client, self.busy, contact_ids, spacing=0.0)
        self.say(
            f"baseline 3: {measure} contacts given directly to {len(self.busy)} agents "
            f"(no router) in {took:.1f} s: {measure / took:.1f} assignments/s"
        )
        self.say(describe("baseline 3: assignment -> delivered", latencies))
        spaced_ids = await start_contacts(
            self.client,
            len(self.calm),
            queue=None,
            smtp_port=self.smtp_port,
            hold=LONG_HOLD,
            tag=f"s{self.tag}",
        )
        await asyncio.sleep(2.0)
        latencies, _ = await direct(
            self.client, self.calm, spaced_ids, spacing=self.args.spacing, wait_result=False
        )
        self.say(describe("baseline 4: assignment -> delivered, spaced", latencies))


def free_to_delivered(outcomes: list[StandInResult], ready_at: dict[str, datetime]) -> list[float]:
    """From the moment each agent was free (ready, or its previous contact closed) to its next
    contact delivered."""
    by_agent: defaultdict[str, list[StandInResult]] = defaultdict(list)
    for result in outcomes:
        by_agent[result.agent_id].append(result)
    samples: list[float] = []
    for agent_id, done in by_agent.items():
        free = ready_at[agent_id]
        for result in sorted(done, key=lambda r: r.delivered_at):
            samples.append((result.delivered_at - free).total_seconds())
            free = result.released_at
    return samples


async def direct(
    client: Client,
    agents: list[AgentSettings],
    contact_ids: list[str],
    *,
    spacing: float,
    wait_result: bool = True,
) -> tuple[list[float], float]:
    """Give contacts to agents by one update each: all agents at once, each taking the next
    when its last is done; or, spaced, one agent and one contact every `spacing` seconds."""
    pending = list(reversed(contact_ids))
    latencies: list[float] = []

    async def give(agent: AgentSettings, contact_id: str) -> None:
        given = datetime.now(UTC)
        handle: WorkflowHandle[Any, StandInResult] = client.get_workflow_handle(
            contact_id, result_type=StandInResult
        )
        await handle.execute_update(
            "route", RouteRequest(agent_id=agent.id, agent_email=agent.email, round=1)
        )
        while (state := await handle.query("delivery", result_type=Delivery)).result is None:
            await asyncio.sleep(0.05)
        latencies.append((state.result.delivered_at - given).total_seconds())
        if wait_result:
            await handle.result()

    async def at_work(agent: AgentSettings) -> None:
        while pending:
            await give(agent, pending.pop())

    began = time.monotonic()
    if spacing:
        tasks = []
        for agent in agents:
            tasks.append(asyncio.create_task(give(agent, pending.pop())))
            await asyncio.sleep(spacing)
        await asyncio.gather(*tasks)
    else:
        await asyncio.gather(*(at_work(a) for a in agents))
    return latencies, time.monotonic() - began


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--signals", type=int, default=5_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--measure", type=int, default=3_000)
    parser.add_argument("--spacing", type=float, default=0.25)
    arguments = parser.parse_args()
    run_then_exit(lambda: asyncio.run(main(arguments)))

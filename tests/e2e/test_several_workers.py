"""Several workers on one task queue, as production runs them: two `worker.py` processes, a
third started mid-run, one stopped with SIGTERM (a rolling upgrade's step). Every email becomes
exactly one contact, answered once, delivered once and closed once; and each worker did part of
the work, by its own metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.queues import Presence
from ace_email.operations.agents_queues import contact_command, set_presence
from ace_email.operations.common import contact_state
from ace_email.operations.registry import sync
from tests.metrics_support import Samples, scrape, total
from tests.routing_support import new_tag, routed_settings
from tests.support import (
    AGENT_EMAIL,
    MailStack,
    embedded_mail,
    eventually,
    free_port,
    make_message,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
EMAILS = 30
CUSTOMERS = [f"customer{i}@example.org" for i in range(EMAILS)]


@pytest.fixture
async def mail(tmp_path: Path) -> AsyncIterator[MailStack]:
    async with embedded_mail(tmp_path / "mail", CUSTOMERS) as stack:
        yield stack


class WorkerProcess:
    """`worker.py` with a metrics port of its own (from the environment, as systemd's
    per-instance files give it)."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.metrics_port = free_port()
        env = os.environ | {
            "ACE_EMAIL_METRICS__PROMETHEUS_LISTEN": f"127.0.0.1:{self.metrics_port}",
            "ACE_EMAIL_METRICS__SAMPLE_SECONDS": "2",
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "worker.py", "--config", str(config)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.last_scrape: Samples = {}

    async def scrape(self) -> Samples:
        try:
            self.last_scrape = await asyncio.to_thread(scrape, self.metrics_port)
        except OSError as exc:
            raise AssertionError(f"{self.name}: no metrics yet: {exc}") from None
        return self.last_scrape

    def cost(self) -> str:
        """Resident memory and CPU time so far, from /proc (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        rss = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return f"{int(rss) / 1024:.0f} MB resident, {cpu:.1f} s CPU"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


async def test_two_workers_a_third_mid_run_and_one_stopped_lose_and_double_nothing(
    client: Client, mail: MailStack, temporal_address: str, tmp_path: Path
) -> None:
    tag = new_tag()
    queue, alice = f"support-{tag}", f"alice-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": alice, "email": AGENT_EMAIL, "capacity": EMAILS}],
    )
    account = settings.accounts[0].name
    config = write_config(tmp_path / "ace-email.toml", settings)
    workers = [WorkerProcess(f"w{i}", config, tmp_path / f"w{i}.log") for i in (1, 2)]
    try:
        await eventually(lambda: workers[0].scrape(), timeout=30)
        print(f"w1 idle: {workers[0].cost()}")
        await sync(client, settings)
        await set_presence(client, settings, alice, Presence.READY)
        contacts: list[str] = []
        for index, customer in enumerate(CUSTOMERS):
            raw = make_message(f"Question {index}", sender=customer)
            await mail.send(raw, sender=customer)
            contacts.append(ids.contact_workflow_id(account, mime.message_key(raw)))
            await asyncio.sleep(0.15)
            if index == EMAILS // 3:
                workers.append(WorkerProcess("w3", config, tmp_path / "w3.log"))
            if index == 2 * EMAILS // 3:
                await workers[0].scrape()
                print(f"w1 before SIGTERM: {workers[0].cost()}")
                assert workers[0].stop() == 0  # SIGTERM: graceful, exit 0

        async def all_delivered() -> bool:
            states = [await contact_state(client, c) for c in contacts]
            assert all(s.status is ContactStatus.DELIVERED for s in states), [
                s.status for s in states
            ]
            assert all(str(s.auto_reply).startswith("sent to ") for s in states)
            return True

        await eventually(all_delivered, timeout=120, interval=0.5)
        for contact_id in contacts:
            await contact_command(client, contact_id, "close_contact")
        for worker in workers[1:]:
            await worker.scrape()
            print(f"{worker.name}: {worker.cost()}")
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0, 0]

    # Exactly once: one contact per email, each completed; one reply, one delivery each.
    query = f"WorkflowType = 'ContactWorkflow' AND {sa.ACCOUNT.name} = '{account}'"
    found = [w async for w in client.list_workflows(query)]
    assert sorted(w.id for w in found) == sorted(contacts)
    for contact_id in contacts:
        description = await client.get_workflow_handle(contact_id).describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED, contact_id
    for customer in CUSTOMERS:
        assert len(await mail.messages(customer)) == 1, customer
    delivered = [m["X-Ace-Contact"] for m in await mail.messages(AGENT_EMAIL)]
    assert sorted(delivered) == sorted(contacts)

    # Each worker did part of the work, by its own metrics.
    for worker in workers:
        activities = total(worker.last_scrape, "temporal_activity_task_received_total")
        tasks = total(worker.last_scrape, "temporal_workflow_task_execution_latency_seconds_count")
        print(f"{worker.name}: {activities:.0f} activity tasks, {tasks:.0f} workflow tasks")
        assert activities > 0 and tasks > 0, worker.name

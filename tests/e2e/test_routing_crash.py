"""SIGKILL the worker again and again while contacts are routed, offered, delivered and
closed: every contact still reaches one agent and is closed once, no agent ever holds more
than their capacity, no email goes out twice (but in SMTP's own window), no work item at all."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.operations.common import Refused
from ace_email.operations.registry import sync
from tests.conftest import Pipeline
from tests.e2e.test_routing_end_to_end import Agents, most_at_once
from tests.e2e.test_worker_crash import WorkerProcess
from tests.routing_support import new_tag, queued_in, reach, ready, routed_settings, work_item
from tests.support import AGENT_EMAIL, MailStack, make_message, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

EMAILS = 10
WORK_ITEMS = 6
KILLS = 4


class PatientAgents(Agents):
    """The agents of the end-to-end test, who wait while the worker is down."""

    async def run(self, total: int) -> None:
        while len(self.handled) < total:
            try:
                await super().run(total)
            except (RPCError, Refused, TimeoutError):
                await asyncio.sleep(0.5)


async def test_routing_survives_worker_kills_without_losing_or_doubling_anything(
    client: Client, mail: MailStack, temporal_address: str, tmp_path: Path
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    alice, dave = f"alice-{tag}", f"dave-{tag}"
    capacities = {alice: 2, dave: 1}
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[
            {"id": alice, "email": AGENT_EMAIL, "capacity": 2},
            {"id": dave, "capacity": 1},
        ],
        account_extra={"auto_reply": False},
    )
    account = settings.accounts[0]
    fast = {
        "imap": account.imap.model_copy(update={"timeout_seconds": 2.0}),
        "smtp": account.smtp.model_copy(update={"timeout_seconds": 2.0}),
    }
    settings = settings.model_copy(update={"accounts": [account.model_copy(update=fast)]})
    config = write_config(
        tmp_path / "ace-email.toml", settings, password_env="ACE_TEST_IMAP_PASSWORD"
    )
    worker = WorkerProcess(config, tmp_path / "worker.log")
    rng = random.Random(int(os.environ.get("ACE_CRASH_SEED", "20261130")))
    pipeline = Pipeline(settings=settings, client=client, mail=mail)
    worker.start()
    try:
        await sync(client, settings)
        emails = []
        for n in range(EMAILS):
            raw = make_message(f"Question {n}", f"Email {n}.")
            await mail.send(raw)
            emails.append(ids.contact_workflow_id(pipeline.account, mime.message_key(raw)))
        items = [await work_item(pipeline, f"Work item {n}") for n in range(WORK_ITEMS)]
        await queued_in(client, queue, EMAILS + WORK_ITEMS, timeout=120)

        people = PatientAgents(pipeline, capacities)
        for agent_id in capacities:
            await ready(pipeline, agent_id)
        working = asyncio.create_task(people.run(EMAILS + WORK_ITEMS))
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            worker.kill()
            await asyncio.sleep(rng.uniform(0.0, 1.0))
            worker.start()
        await asyncio.wait_for(working, timeout=300)
        states = {
            c: await reach(client, c, ContactStatus.CLOSED, timeout=60) for c in emails + items
        }
        from ace_email.operations.agents_queues import agents as agent_rows

        rows = await agent_rows(client, settings)
    finally:
        worker.stop()

    assert worker.kills == KILLS
    assert all(people.handled[c] == s.agent for c, s in states.items())
    for row in rows:
        assert row["load"] == 0 and row["max_load"] <= row["capacity"], row
    for agent_id, capacity in capacities.items():
        assert most_at_once([s for s in states.values() if s.agent == agent_id]) <= capacity

    copies = await mail.messages(AGENT_EMAIL)
    per_contact = Counter(str(m["X-Ace-Contact"]) for m in copies)
    assert not set(per_contact) & set(items), "a work item went out by SMTP"
    to_alice = {c for c, s in states.items() if s.agent == alice and c in emails}
    assert set(per_contact) == to_alice
    resent_ids: dict[str, set[str]] = {str(m["X-Ace-Contact"]): set() for m in copies}
    for message in copies:
        resent_ids[str(message["X-Ace-Contact"])].add(str(message["Resent-Message-ID"]))
    again = {c: n for c, n in per_contact.items() if n > 1}
    assert all(len(resent_ids[c]) == 1 for c in again), "a copy sent again has the same id"
    assert len(again) <= worker.kills, again
    assert len(await mail.messages(mail.support, "Archive")) == EMAILS + WORK_ITEMS

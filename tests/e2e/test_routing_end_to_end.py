"""The contact centre at work, on both mail stacks: three agents (two in their own mail client,
one in the built-in interface; capacities 1, 2 and 1), thirty emails of mixed priority and five
work items. Agents handle what they get as people would: they read what reaches their
mailbox, accept what is offered, and close it. Then everything is counted."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.operations.agents_queues import agents as agent_rows
from ace_email.operations.common import Refused, contact_state
from ace_email.operations.registry import sync
from tests.conftest import Pipeline
from tests.routing_support import (
    accept,
    close,
    new_tag,
    queued_in,
    reach,
    ready,
    routed_settings,
    routing_worker,
    work_item,
)
from tests.support import (
    AGENT_EMAIL,
    CUSTOMER,
    SECOND_AGENT_EMAIL,
    MailStack,
    make_message,
)

pytestmark = pytest.mark.e2e

EMAILS = 30
WORK_ITEM_PRIORITIES = [0, 3, 5, 0, 1]


def email_priority(n: int) -> tuple[str, int]:
    if n % 5 == 0:
        return "URGENT", 5
    if n % 3 == 0:
        return "VIP", 3
    return "Question", 0


class Agents:
    """Three people at work: each takes what reaches them and closes it after a moment."""

    def __init__(self, pipeline: Pipeline, capacities: dict[str, int]) -> None:
        self.pipeline = pipeline
        self.capacities = capacities
        self.handled: dict[str, str] = {}
        self.most_held: defaultdict[str, int] = defaultdict(int)
        self.closing: set[str] = set()

    async def run(self, total: int) -> None:
        while len(self.handled) < total:
            rows = await agent_rows(self.pipeline.client, self.pipeline.settings)
            for row in rows:
                self.most_held[row["id"]] = max(self.most_held[row["id"]], row["load"])
                for contact_id in row["contacts"]:
                    if contact_id not in self.closing:
                        await self._handle(row["id"], contact_id)
            await asyncio.sleep(0.1)

    async def _handle(self, agent_id: str, contact_id: str) -> None:
        try:
            state = await contact_state(self.pipeline.client, contact_id)
        except Refused:
            return
        if state.status is ContactStatus.OFFERED:
            await accept(self.pipeline, contact_id, agent_id)
        elif state.status in (ContactStatus.ASSIGNED, ContactStatus.DELIVERED):
            self.closing.add(contact_id)
            await close(self.pipeline, contact_id)
            self.handled[contact_id] = agent_id


async def test_thirty_emails_and_five_work_items_reach_the_right_agents_in_order(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    alice, carol, dave = f"alice-{tag}", f"carol-{tag}", f"dave-{tag}"
    capacities = {alice: 1, carol: 2, dave: 1}
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[
            {"id": alice, "email": AGENT_EMAIL, "capacity": 1},
            {"id": carol, "email": SECOND_AGENT_EMAIL, "capacity": 2},
            {"id": dave, "capacity": 1},
        ],
        account_extra={
            "auto_reply": False,
            "rules": [
                {"name": "urgent", "when": {"subject": "^URGENT"}, "then": {"priority": 5}},
                {"name": "vip", "when": {"subject": "^VIP"}, "then": {"priority": 3}},
            ],
        },
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await sync(client, settings)
        emails: dict[str, int] = {}
        for n in range(EMAILS):
            label, priority = email_priority(n)
            raw = make_message(f"{label} {n}", f"Email number {n}.")
            await mail.send(raw)
            emails[ids.contact_workflow_id(pipeline.account, mime.message_key(raw))] = priority
        items: dict[str, int] = {}
        for n, priority in enumerate(WORK_ITEM_PRIORITIES):
            reply_to = CUSTOMER if n % 2 else None
            contact = await work_item(
                pipeline, f"Work item {n}", priority=priority, reply_to=reply_to
            )
            items[contact] = priority
        await queued_in(client, queue, EMAILS + len(items), timeout=120)

        people = Agents(pipeline, capacities)
        for agent_id in capacities:
            await ready(pipeline, agent_id)
        await asyncio.wait_for(people.run(EMAILS + len(items)), timeout=240)

        states = {c: await reach(client, c, ContactStatus.CLOSED) for c in [*emails, *items]}
        final_rows = await agent_rows(client, settings)

    # every contact was handled, by the agent it was routed to, in the queue's order
    assert set(people.handled) == set(states)
    assert all(people.handled[c] == s.agent for c, s in states.items())
    routed = sorted(states.values(), key=lambda s: s.routed_sequence or 0)
    assert all(s.routed_by == f"queue {queue}" for s in routed)
    expected = sorted(
        states.values(), key=lambda s: (-s.priority, s.waiting_since or datetime.max, s.id)
    )
    assert [s.id for s in routed] == [s.id for s in expected]
    assert [s.priority for s in routed] == sorted((s.priority for s in routed), reverse=True)

    # no agent ever held more than their capacity: as seen, as counted, and as lived
    for agent_id, capacity in capacities.items():
        assert 0 < people.most_held[agent_id] <= capacity, (agent_id, people.most_held)
    for row in final_rows:
        assert row["max_load"] <= row["capacity"] and row["load"] == 0, row
    for agent_id, capacity in capacities.items():
        assert most_at_once([s for s in states.values() if s.agent == agent_id]) <= capacity

    # emails went to the external agents' mailboxes; nothing else did, work items never
    delivered: defaultdict[str, set[str]] = defaultdict(set)
    for user in (AGENT_EMAIL, SECOND_AGENT_EMAIL, CUSTOMER, mail.support):
        for message in await mail.messages(user):
            assert message["X-Ace-Channel"] is None, f"a work item in {user}'s mailbox"
            assert message["X-Ace-Contact"] not in items, f"a work item delivered to {user}"
            if message["X-Ace-Contact"]:
                delivered[user].add(str(message["X-Ace-Contact"]))
    for contact, state in states.items():
        if contact in items or state.agent == dave:
            assert not any(contact in got for got in delivered.values())
        else:
            assert delivered[state.agent_email or ""] >= {contact}
    assert {state.agent for state in states.values()} == set(capacities)
    assert len(await mail.messages(mail.support, "Archive")) == EMAILS + len(items)


def most_at_once(states: list[ContactState]) -> int:
    """The most contacts one agent held at the same time, from when each was given to them
    to when it was closed."""
    events = sorted(
        [(s.assigned_at, 1) for s in states if s.assigned_at]
        + [(s.closed_at, -1) for s in states if s.closed_at]
    )
    held = most = 0
    for _, change in events:
        held += change
        most = max(most, held)
    return most

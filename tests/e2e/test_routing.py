"""Routing on real servers: queues order their contacts, agents take what they can hold, offers
time out, priorities escalate, queues overflow, contacts move by hand.

Work items make most contacts here (they need no poll); the delivery tests use email.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client

from ace_email.contracts.contact import ContactStatus
from ace_email.operations.agents_queues import queue_status
from ace_email.operations.common import contact_state
from tests.recording import record_history
from tests.routing_support import (
    accept,
    agent,
    close,
    new_tag,
    queued_in,
    reach,
    ready,
    routed_settings,
    routing_worker,
    work_item,
)
from tests.support import MailStack

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]


async def test_waiting_contacts_go_by_priority_then_age_to_the_longest_idle_agent(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    ann, ben = f"ann-{tag}", f"ben-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": ann, "capacity": 1}, {"id": ben, "capacity": 1}],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        created = []
        for subject, priority in [("low 1", 0), ("high 1", 5), ("low 2", 0), ("high 2", 5)]:
            created.append((subject, await work_item(pipeline, subject, priority=priority)))
        await queued_in(client, queue, 4)
        by_subject = dict(created)

        await ready(pipeline, ben)
        await asyncio.sleep(0.5)
        await ready(pipeline, ann)
        first = await reach(client, by_subject["high 1"], ContactStatus.OFFERED)
        second = await reach(client, by_subject["high 2"], ContactStatus.OFFERED)
        assert first.agent == ben, "ben was ready first: the longest idle"
        assert second.agent == ann
        assert (first.routed_sequence or 0) < (second.routed_sequence or 0)
        assert (await queue_status(client, queue)).waiting == 2

        await accept(pipeline, first.id, ben)
        await close(pipeline, first.id)
        third = await reach(client, by_subject["low 1"], ContactStatus.OFFERED)
        assert third.agent == ben
        status = await contact_state(client, by_subject["low 2"])
        assert status.status is ContactStatus.QUEUED


async def test_a_contact_waits_for_an_agent_with_its_skills(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    plain, billing = f"plain-{tag}", f"billing-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[
            {"id": plain, "capacity": 2},
            {"id": billing, "capacity": 2, "skills": ["invoices", "swedish"]},
        ],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        invoice = await work_item(pipeline, "Invoice 4711", skills=["invoices"])
        await queued_in(client, queue, 1)
        await ready(pipeline, plain)
        await asyncio.sleep(1.0)
        assert (await contact_state(client, invoice)).status is ContactStatus.QUEUED
        other = await work_item(pipeline, "Where is my parcel?")
        assert (await reach(client, other, ContactStatus.OFFERED)).agent == plain

        await ready(pipeline, billing)
        assert (await reach(client, invoice, ContactStatus.OFFERED)).agent == billing


async def test_an_agent_never_holds_more_than_their_capacity_and_a_close_frees_a_place(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    ann = f"ann-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": ann, "capacity": 2, "channel_capacity": {"social": 1}}],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        items = [await work_item(pipeline, f"Item {n}") for n in range(4)]
        social = await work_item(pipeline, "A tweet", channel="social", priority=9)
        social_2 = await work_item(pipeline, "Another tweet", channel="social", priority=9)
        await queued_in(client, queue, 6)
        await ready(pipeline, ann)
        await reach(client, social, ContactStatus.OFFERED)
        offered = await reach(client, items[0], ContactStatus.OFFERED)
        await asyncio.sleep(1.0)
        status = await agent(pipeline, ann)
        assert status.load == 2 and status.max_load == 2
        assert (await contact_state(client, social_2)).status is ContactStatus.QUEUED, (
            "one social contact at a time"
        )
        assert (await queue_status(client, queue)).waiting == 4

        await accept(pipeline, offered.id, ann)
        await close(pipeline, offered.id)
        closed = await reach(client, offered.id, ContactStatus.CLOSED)
        assert closed.closed_at is not None
        await reach(client, items[1], ContactStatus.OFFERED)
        status = await agent(pipeline, ann)
        assert status.load == 2 and status.max_load == 2


async def test_an_offer_not_taken_in_time_goes_back_to_its_place_and_never_to_that_agent(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    slow, other = f"slow-{tag}", f"other-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": slow, "capacity": 1}, {"id": other, "capacity": 1}],
        routing={"offer_timeout_seconds": 2},
    )
    async with routing_worker(client, mail, settings) as pipeline:
        first = await work_item(pipeline, "First")
        second = await work_item(pipeline, "Second")
        await queued_in(client, queue, 2)
        await ready(pipeline, slow)
        assert (await reach(client, first, ContactStatus.OFFERED)).agent == slow
        back = await reach(client, first, ContactStatus.QUEUED, ContactStatus.OFFERED, timeout=2)
        assert back.agent == slow
        # the offer times out; the slow agent is free again and gets the second contact
        second_state = await reach(client, second, ContactStatus.OFFERED, timeout=15)
        assert second_state.agent == slow
        first_state = await reach(client, first, ContactStatus.QUEUED)
        assert first_state.excluded_agents == [slow]
        assert "timed out" in (first_state.last_error or "")

        await ready(pipeline, other)
        assert (await reach(client, first, ContactStatus.OFFERED)).agent == other


async def test_a_declined_offer_returns_ahead_of_younger_contacts(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    ann, ben = f"ann-{tag}", f"ben-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": ann, "capacity": 1}, {"id": ben, "capacity": 1}],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        older = await work_item(pipeline, "Older")
        younger = await work_item(pipeline, "Younger")
        await queued_in(client, queue, 2)
        await ready(pipeline, ann)
        await reach(client, older, ContactStatus.OFFERED)
        from ace_email.operations.agents_queues import answer_offer

        await answer_offer(client, pipeline.settings, older, ann, accept=False)
        assert (await reach(client, younger, ContactStatus.OFFERED)).agent == ann
        await ready(pipeline, ben)
        assert (await reach(client, older, ContactStatus.OFFERED)).agent == ben


async def test_priority_rises_while_a_contact_waits(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    ann = f"ann-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue, "escalate_after_minutes": 0.02, "escalate_step": 3}],
        agents=[{"id": ann, "capacity": 1}],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        patient = await work_item(pipeline, "Waiting long", priority=0)
        await asyncio.sleep(4.0)
        urgent = await work_item(pipeline, "Urgent but new", priority=5)
        status = await queued_in(client, queue, 2)
        assert [c.contact_id for c in status.head] == [patient, urgent]
        assert status.head[0].effective_priority >= 9 and status.head[0].priority == 0

        await ready(pipeline, ann)
        assert (await reach(client, patient, ContactStatus.OFFERED)).agent == ann
        assert (await contact_state(client, urgent)).status is ContactStatus.QUEUED


async def test_a_contact_waiting_too_long_overflows_to_another_queue(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    support, billing = f"support-{tag}", f"billing-{tag}"
    ann = f"ann-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[
            {"name": support},
            {"name": billing, "overflow_after_minutes": 0.03, "overflow_to": support},
        ],
        agents=[{"id": ann, "capacity": 1, "queues": [support]}],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await ready(pipeline, ann)
        invoice = await work_item(pipeline, "Invoice question", queue=billing)
        assert (await reach(client, invoice, ContactStatus.QUEUED)).queue == billing
        offered = await reach(client, invoice, ContactStatus.OFFERED, timeout=20)
        assert offered.queue == support and offered.agent == ann
        assert (await queue_status(client, billing)).overflowed == 1


async def test_a_contact_for_one_agent_waits_in_their_personal_list_then_returns(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    ann, ben = f"ann-{tag}", f"ben-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": ann, "capacity": 1}, {"id": ben, "capacity": 1}],
        routing={"personal_wait_minutes": 0.04},
    )
    async with routing_worker(client, mail, settings) as pipeline:
        from ace_email.operations.agents_queues import transfer

        contact = await work_item(pipeline, "For Ben")
        await queued_in(client, queue, 1)
        await transfer(client, pipeline.settings, contact, agent_id=ben)
        waiting = await reach(client, contact, ContactStatus.QUEUED)
        assert waiting.waiting_for == ben
        assert (await agent(pipeline, ben)).personal[0].contact_id == contact
        await ready(pipeline, ann)
        await asyncio.sleep(1.0)
        assert (await contact_state(client, contact)).waiting_for == ben, "not for ann"

        async def back_in_queue() -> bool:
            state = await contact_state(client, contact)
            assert state.waiting_for is None, state.waiting_for
            return True

        await reach(client, contact, ContactStatus.QUEUED, ContactStatus.OFFERED)
        from tests.support import eventually

        await eventually(back_in_queue, timeout=15)
        offered = await reach(client, contact, ContactStatus.OFFERED)
        assert offered.agent == ann

        await accept(pipeline, contact, ann)
        await ready(pipeline, ben)
        await transfer(client, pipeline.settings, contact, agent_id=ben)
        assert (await reach(client, contact, ContactStatus.OFFERED)).agent == ben
        assert (await agent(pipeline, ann)).load == 0
        await record_history(client, contact, "contact_workitem_transferred")


async def test_a_queue_carries_its_waiting_contacts_and_agents_through_continue_as_new(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    """A queue started to continue as new every few events keeps its order and its agents."""
    from datetime import UTC, datetime, timedelta

    from ace_email.contracts import ids
    from ace_email.contracts.queues import QueueInput, Waiting
    from workflows.queue import QueueWorkflow

    tag = new_tag()
    queue = f"support-{tag}"
    ann = f"ann-{tag}"
    settings = routed_settings(
        mail, temporal_address, tag, queues=[{"name": queue}], agents=[{"id": ann}]
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await ready(pipeline, ann)
        handle = await client.start_workflow(
            QueueWorkflow.run,
            QueueInput(policy=settings.queue_policy(queue), events_per_run=15),
            id=ids.queue_workflow_id(queue),
            task_queue=settings.temporal.task_queue,
        )
        first_run = (await handle.describe()).run_id
        base = datetime.now(UTC) - timedelta(hours=1)
        for n in range(40):
            entry = Waiting(
                contact_id=f"contact-nowhere-{n:04}",
                round=1,
                priority=n % 2,
                waiting_since=base + timedelta(seconds=n),
                entered_at=base,
                skills=["a skill nobody has"],
            )
            await handle.signal(QueueWorkflow.enqueue, entry)
        status = await queued_in(client, queue, 40)
        assert (await handle.describe()).run_id != first_run
        assert [c.contact_id for c in status.head[:3]] == [
            "contact-nowhere-0001",
            "contact-nowhere-0003",
            "contact-nowhere-0005",
        ]
        assert status.agents_ready == 1, "the agents it knew, known still"

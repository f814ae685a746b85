"""How a routed contact reaches its agent, on real servers: an email to an agent's own mailbox
by SMTP, everything else in the built-in interface, whoever takes it and however."""

from __future__ import annotations

import email
from email.policy import default as default_policy

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.queues import Presence
from ace_email.operations.agents_queues import contact_command, queue_status, transfer
from ace_email.operations.common import Refused, contact_state
from ace_email.operations.contacts import assign
from ace_email.operations.registry import sync
from tests.conftest import Pipeline
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
from tests.support import AGENT_EMAIL, SECOND_AGENT_EMAIL, MailStack, eventually, make_message

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]


async def send_email(pipeline: Pipeline, subject: str, body: str = "Hello.") -> str:
    raw = make_message(subject, body, attachment=("order.pdf", b"%PDF-1.4 order"))
    await pipeline.mail.send(raw)
    return ids.contact_workflow_id(pipeline.account, mime.message_key(raw))


async def test_an_email_goes_to_an_agents_mailbox_and_to_a_built_in_agent_as_an_offer(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    alice, bob = f"alice-{tag}", f"bob-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": alice, "email": AGENT_EMAIL}, {"id": bob}],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await sync(client, settings)
        first = await send_email(pipeline, "First question")
        await reach(client, first, ContactStatus.QUEUED)
        second = await send_email(pipeline, "Second question")
        await queued_in(client, queue, 2)

        await ready(pipeline, alice)

        async def one_delivered() -> tuple[str, str]:
            states = [await contact_state(client, c) for c in (first, second)]
            delivered = [s for s in states if s.status is ContactStatus.DELIVERED]
            assert len(delivered) == 1, [s.status for s in states]
            assert delivered[0].agent == alice and delivered[0].routed_by == f"queue {queue}"
            other = first if delivered[0].id == second else second
            return delivered[0].id, other

        emailed, offered_one = await eventually(one_delivered)
        (copy,) = await mail.messages(AGENT_EMAIL)
        assert copy["X-Ace-Contact"] == emailed and copy["Resent-To"] == AGENT_EMAIL

        await ready(pipeline, bob)
        offered = await reach(client, offered_one, ContactStatus.OFFERED)
        assert offered.agent == bob and offered.offer_expires_at is not None
        await accept(pipeline, offered_one, bob)
        assert (await reach(client, offered_one, ContactStatus.ASSIGNED)).agent == bob
        assert len(await mail.messages(AGENT_EMAIL)) == 1

        await close(pipeline, first)
        await close(pipeline, second)
        await reach(client, first, ContactStatus.CLOSED)
        await reach(client, second, ContactStatus.CLOSED)
        assert (await agent(pipeline, alice)).load == 0
        assert await mail.messages(mail.support, "Processing") == []
        assert len(await mail.messages(mail.support, "Archive")) == 2
        await record_history(client, emailed, "contact_routed_delivered_closed")
        await record_history(client, offered_one, "contact_routed_offered_accepted_closed")
        await record_history(client, ids.queue_workflow_id(queue), "queue_routing")
        await record_history(client, ids.agent_workflow_id(alice), "agent_routed")


async def test_a_work_item_never_goes_out_by_smtp_whoever_takes_it_and_however(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue = f"support-{tag}"
    alice = f"alice-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": alice, "email": AGENT_EMAIL, "capacity": 5}],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        routed = await work_item(pipeline, "Routed", reply_to="customer@example.org")
        social = await work_item(pipeline, "A post", channel="social")
        assigned = await work_item(pipeline, "Assigned by hand")
        transferred = await work_item(pipeline, "Transferred by hand")
        await queued_in(client, queue, 4)

        result = await assign(client, pipeline.settings, assigned, alice)
        assert "assigned" in result, result
        await transfer(client, pipeline.settings, transferred, agent_id=alice)
        await ready(pipeline, alice)
        for contact in (routed, social, transferred):
            state = await reach(client, contact, ContactStatus.OFFERED)
            assert state.agent == alice and state.agent_email == AGENT_EMAIL
            await accept(pipeline, contact, alice)
            assert (await reach(client, contact, ContactStatus.ASSIGNED)).agent == alice
        assert (await contact_state(client, assigned)).status is ContactStatus.ASSIGNED
        assert (await agent(pipeline, alice)).load == 4

        await ready(pipeline, alice, Presence.NOT_READY)
        waiting = await work_item(pipeline, "Still waiting")
        await reach(client, waiting, ContactStatus.QUEUED)
        with pytest.raises(Refused, match="only a contact that has left its queue"):
            await contact_command(client, waiting, "requeue")
        for user in (AGENT_EMAIL, SECOND_AGENT_EMAIL, "customer@example.org"):
            assert await mail.messages(user) == [], f"nothing in {user}'s mailbox"
        assert len(await mail.messages(mail.support, "WorkItems")) == 5


async def test_transfer_and_requeue_move_a_contact_and_a_delivered_email_goes_out_again(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    support, billing = f"support-{tag}", f"billing-{tag}"
    alice, carol = f"alice-{tag}", f"carol-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": support}, {"name": billing}],
        agents=[
            {"id": alice, "email": AGENT_EMAIL, "queues": [support]},
            {"id": carol, "email": SECOND_AGENT_EMAIL, "queues": [billing]},
        ],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await sync(client, settings)
        contact = await send_email(pipeline, "About my invoice")
        await queued_in(client, support, 1)
        await ready(pipeline, alice)
        await reach(client, contact, ContactStatus.DELIVERED)

        await transfer(client, pipeline.settings, contact, queue=billing)
        moved = await reach(client, contact, ContactStatus.QUEUED)
        assert moved.queue == billing and moved.agent is None
        assert (await agent(pipeline, alice)).load == 0
        assert (await queue_status(client, billing)).waiting == 1

        await ready(pipeline, carol)
        again = await reach(client, contact, ContactStatus.DELIVERED)
        assert again.agent == carol
        (to_carol,) = await mail.messages(SECOND_AGENT_EMAIL)
        assert to_carol["X-Ace-Contact"] == contact
        assert len(await mail.messages(AGENT_EMAIL)) == 1

        await contact_command(client, contact, "requeue")
        back = await reach(client, contact, ContactStatus.QUEUED, ContactStatus.DELIVERED)
        assert back.queue == billing

        async def archived_once() -> bool:
            assert len(await mail.messages(mail.support, "Archive")) == 1
            return True

        await eventually(archived_once)
        original = email.message_from_bytes(
            mail.raw_folder(mail.support, "Archive")[0][1], policy=default_policy
        )
        assert original["Subject"] == "About my invoice"


async def test_follow_ups_in_one_agents_mailbox_move_on_with_the_contact(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    support, billing = f"support-{tag}", f"billing-{tag}"
    alice, carol, bob = f"alice-{tag}", f"carol-{tag}", f"bob-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": support}, {"name": billing}],
        agents=[
            {"id": alice, "email": AGENT_EMAIL, "queues": [support]},
            {"id": carol, "email": SECOND_AGENT_EMAIL, "queues": [billing]},
            {"id": bob, "queues": [billing]},
        ],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await sync(client, settings)
        contact = await send_email(pipeline, "About my invoice")
        await ready(pipeline, alice)
        first = await reach(client, contact, ContactStatus.DELIVERED)
        follow_up = await send_email(pipeline, f"Re: About my invoice [#{first.reference}]")
        await reach(client, follow_up, ContactStatus.JOINED)

        async def in_mailbox(user: str, count: int) -> list[str]:
            messages = await mail.messages(user)
            assert len(messages) == count, [m["Subject"] for m in messages]
            assert {m["X-Ace-Contact"] for m in messages} == {contact}
            return [str(m["Subject"]) for m in messages]

        await eventually(lambda: in_mailbox(AGENT_EMAIL, 2))

        await transfer(client, pipeline.settings, contact, queue=billing)
        moved = await reach(client, contact, ContactStatus.QUEUED)
        assert [n.delivered for n in moved.follow_ups] == [False]
        await ready(pipeline, carol)
        await reach(client, contact, ContactStatus.DELIVERED)
        to_carol = await eventually(lambda: in_mailbox(SECOND_AGENT_EMAIL, 2))
        assert to_carol[0] == "About my invoice", "the thread arrives in the order it came"
        assert (await contact_state(client, contact)).follow_ups[0].delivered

        await transfer(client, pipeline.settings, contact, agent_id=bob)
        await ready(pipeline, bob)
        await reach(client, contact, ContactStatus.OFFERED)
        assert len(await mail.messages(mail.support, "Processing")) == 2
        await accept(pipeline, contact, bob)
        await close(pipeline, contact)
        await reach(client, contact, ContactStatus.CLOSED)
        assert await mail.messages(mail.support, "Processing") == []
        assert len(await mail.messages(mail.support, "Archive")) == 2
        assert len(await mail.messages(AGENT_EMAIL)) == 2
        assert len(await mail.messages(SECOND_AGENT_EMAIL)) == 2
    await record_history(client, contact, "contact_follow_ups_moved_on")


async def test_every_follow_up_in_one_agents_mailbox_moves_on_with_the_contact(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    support, billing = f"support-{tag}", f"billing-{tag}"
    alice, carol = f"alice-{tag}", f"carol-{tag}"
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": support}, {"name": billing}],
        agents=[
            {"id": alice, "email": AGENT_EMAIL, "queues": [support]},
            {"id": carol, "email": SECOND_AGENT_EMAIL, "queues": [billing]},
        ],
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await sync(client, settings)
        contact = await send_email(pipeline, "Three more things")
        await ready(pipeline, alice)
        first = await reach(client, contact, ContactStatus.DELIVERED)
        for n in (1, 2, 3):
            follow_up = await send_email(
                pipeline, f"Re: Three more things [#{first.reference}] {n}"
            )
            await reach(client, follow_up, ContactStatus.JOINED)

        async def in_mailbox(user: str, count: int) -> list[str]:
            messages = await mail.messages(user)
            assert len(messages) == count, [m["Subject"] for m in messages]
            return [str(m["Subject"]) for m in messages]

        await eventually(lambda: in_mailbox(AGENT_EMAIL, 4))
        await transfer(client, pipeline.settings, contact, queue=billing)
        moved = await reach(client, contact, ContactStatus.QUEUED)
        assert [n.delivered for n in moved.follow_ups] == [False, False, False]
        await ready(pipeline, carol)
        await reach(client, contact, ContactStatus.DELIVERED)
        to_carol = await eventually(lambda: in_mailbox(SECOND_AGENT_EMAIL, 4))
        assert to_carol == [
            "Three more things",
            *(f"Re: Three more things [#{first.reference}] {n}" for n in (1, 2, 3)),
        ], "the whole thread, in the order it came"
        assert await mail.messages(mail.support, "Processing") == []
        delivered = await contact_state(client, contact)
        assert [n.delivered for n in delivered.follow_ups] == [True, True, True]
        await close(pipeline, contact)
        await reach(client, contact, ContactStatus.CLOSED)
    await record_history(client, contact, "contact_every_follow_up_moved_on")

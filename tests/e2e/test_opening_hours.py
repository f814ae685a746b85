"""On real servers: an entrance that is closed when an email arrives takes it in, queues it and
acknowledges it with its closed template, offers it to nobody, and gives it to the ready agent
as soon as it opens, a minute or so later."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.operations.agents_queues import describe_queue, queues
from ace_email.operations.common import contact_state
from ace_email.operations.registry import sync
from tests.recording import record_history
from tests.routing_support import new_tag, reach, ready, routed_settings, routing_worker
from tests.support import AGENT_EMAIL, CUSTOMER, MailStack, eventually, make_message

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only, pytest.mark.timeout(240)]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOSED_TEXT = "We are closed now and open again {{ next_opening }}. Case {{ reference }}."


def opening_soon() -> tuple[datetime, str]:
    """A window that opens at the start of a minute 60 to 120 s from now, until midnight (UTC)."""
    opens = (datetime.now(UTC) + timedelta(seconds=120)).replace(second=0, microsecond=0)
    return opens, f"{WEEKDAYS[opens.weekday()]} {opens:%H:%M}-24:00"


async def test_a_closed_entrance_queues_and_acknowledges_and_routes_once_it_opens(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    queue, alice = f"support-{tag}", f"alice-{tag}"
    opens, window = opening_soon()
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": queue}],
        agents=[{"id": alice, "email": AGENT_EMAIL}],
        account_extra={
            "opening_hours": [window],
            "timezone": "UTC",
            "closed_template": "closed",
        },
        extra={"templates": {"closed": {"text": {"en": CLOSED_TEXT}}}},
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await sync(client, settings)
        await ready(pipeline, alice)
        raw = make_message("Broken kettle", "It leaks.")
        await pipeline.mail.send(raw)
        contact_id = ids.contact_workflow_id(pipeline.account, mime.message_key(raw))
        await reach(client, contact_id, ContactStatus.QUEUED)

        async def acknowledged() -> EmailMessage:
            (reply,) = await mail.messages(CUSTOMER)
            assert isinstance(reply, EmailMessage)
            return reply

        reply = await eventually(acknowledged, timeout=30)
        text = reply.get_body(("plain",))
        assert text is not None
        assert f"open again {WEEKDAYS[opens.weekday()].title()} {opens:%Y-%m-%d %H:%M} (UTC)" in (
            text.get_content()
        )
        (row,) = [r for r in await queues(client, settings) if r["queue"] == queue]
        assert row["open"] is False and row["next_change"].startswith(f"{opens:%Y-%m-%dT%H:%M}")
        assert "CLOSED (opens" in describe_queue(row)

        await asyncio.sleep(max((opens - datetime.now(UTC)).total_seconds() - 5, 0))
        state = await contact_state(client, contact_id)
        assert state.status is ContactStatus.QUEUED, "nothing is offered while closed"
        assert await mail.messages(AGENT_EMAIL) == []

        delivered = await reach(client, contact_id, ContactStatus.DELIVERED, timeout=60)
        assert delivered.agent == alice and delivered.assigned_at is not None
        assert delivered.assigned_at >= opens
        (row,) = [r for r in await queues(client, settings) if r["queue"] == queue]
        assert row["open"] is True
        await record_history(client, ids.queue_workflow_id(queue), "queue_closed_then_opened")

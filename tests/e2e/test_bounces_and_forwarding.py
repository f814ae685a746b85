"""On real servers: a bounce of the automatic reply joins its contact, marks the customer's
address undeliverable and spares it the next automatic reply; a contact's email is forwarded
with a note and redirected unchanged, each once; a work item is never sent on."""

from __future__ import annotations

import uuid
from email.message import EmailMessage, Message

import pytest

from ace_email.config.settings import Settings
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.contracts.ids import ledger_workflow_id
from ace_email.operations.agents_queues import contact_command
from ace_email.operations.common import Refused, contact_state
from ace_email.operations.forwarding import send_on
from tests.conftest import Pipeline
from tests.e2e.test_auto_replies_and_follow_ups import (
    auto_reply_outcome,
    written_and_acknowledged,
)
from tests.e2e.test_pipeline import contact_id_of
from tests.recording import record_history
from tests.routing_support import work_item
from tests.support import (
    CUSTOMER,
    SECOND_AGENT_EMAIL,
    MailStack,
    account_settings,
    delivery_status_notification,
    eventually,
    make_message,
    wait_status,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(mail: MailStack, temporal_address: str) -> Settings:
    """The standard test account, whose queue also takes work items."""
    return account_settings(
        name=f"support-{uuid.uuid4().hex[:8]}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-{uuid.uuid4().hex[:8]}",
        extra={"queues": [{"name": "support", "channels": ["email", "workitem"]}]},
    )


OUTSIDE = SECOND_AGENT_EMAIL  # a mailbox of the test servers that stands for a partner's


async def test_a_bounce_of_the_automatic_reply_marks_the_address_and_spares_it_the_next(
    pipeline: Pipeline,
) -> None:
    client, mail = pipeline.client, pipeline.mail
    first, reply = await written_and_acknowledged(pipeline)

    bounce = delivery_status_notification(reply, mail.support, CUSTOMER)
    await mail.send(bounce, sender="MAILER-DAEMON@mx.example.org")
    report = await wait_status(client, contact_id_of(pipeline, bounce), ContactStatus.JOINED)
    assert report.joined_to == first.id and report.bounce_of == first.id
    assert report.bounce is not None and report.bounce.kind == "bounce"

    async def shown() -> ContactState:
        state = await contact_state(client, first.id)
        assert state.bounces and state.undeliverable, state.bounces
        return state

    state = await eventually(shown)
    (note,) = state.bounces
    assert (note.sent_as, note.kind, note.hard) == ("autoreply", "bounce", True)
    (recipient,) = note.recipients
    assert (recipient.address, recipient.status, recipient.reason) == (
        CUSTOMER,
        "5.1.1",
        "userunknown",
    )
    (dead,) = state.undeliverable
    assert dead.address == CUSTOMER and dead.reason.startswith("hard bounce 5.1.1 userunknown")

    again = make_message("Still broken", "Hello again.")
    await mail.send(again)
    outcome = await auto_reply_outcome(client, contact_id_of(pipeline, again))
    assert outcome.startswith(f"not sent: {CUSTOMER} is undeliverable until "), outcome
    assert "hard bounce 5.1.1 userunknown" in outcome
    assert len(await mail.messages(CUSTOMER)) == 1, "one automatic reply, before the bounce"
    await contact_command(client, first.id, "close_contact")
    await wait_status(client, first.id, ContactStatus.CLOSED)
    await record_history(client, first.id, "contact_bounced_then_closed")
    await record_history(client, report.id, "contact_bounce_report_joined")
    await record_history(
        client, ledger_workflow_id(pipeline.account), "auto_reply_ledger_suppressed"
    )


async def arrived(pipeline: Pipeline, count: int) -> list[Message]:
    async def check() -> list[Message]:
        pipeline.mail.settle()
        messages = await pipeline.mail.messages(OUTSIDE)
        assert len(messages) == count, [m["Subject"] for m in messages]
        return messages

    return await eventually(check)


async def test_forward_with_a_note_and_redirect_unchanged_each_go_once(
    pipeline: Pipeline,
) -> None:
    client, settings, mail = pipeline.client, pipeline.settings, pipeline.mail
    first, _ = await written_and_acknowledged(pipeline)
    (original,) = await mail.messages(mail.support, "Processing")

    for _ in range(2):
        await send_on(
            client, settings, first.id, OUTSIDE, mode="forward", note="Over to you.", by="alice"
        )
    (received,) = await arrived(pipeline, 1)
    assert isinstance(received, EmailMessage)
    forwarded = received
    assert forwarded["Subject"] == f"Fwd: Broken kettle [#{first.reference}]"
    assert forwarded["X-Ace-Contact"] == first.id
    body = forwarded.get_body(("plain",))
    assert body is not None and "Over to you." in body.get_content()
    (attached,) = list(forwarded.iter_attachments())
    assert attached.get_content_type() == "message/rfc822"
    assert attached.get_content()["Message-ID"] == original["Message-ID"]

    for _ in range(2):
        await send_on(client, settings, first.id, OUTSIDE, mode="redirect", by="alice")
    redirected = (await arrived(pipeline, 2))[1]
    assert redirected["Resent-To"] == OUTSIDE and redirected["Resent-From"] == mail.support
    assert redirected["Message-ID"] == original["Message-ID"], "the original, unchanged"
    assert redirected["Subject"] == "Broken kettle"

    state = await contact_state(client, first.id)
    assert [(f.mode, f.to, f.by) for f in state.forwards] == [
        ("forward", OUTSIDE, "alice"),
        ("redirect", OUTSIDE, "alice"),
    ]
    sent = await mail.messages(mail.support, "Sent")
    assert sum(1 for m in sent if m["X-Ace-Contact"] == first.id) == 2, "each one on record"

    item = await work_item(pipeline, "Call the customer back")
    with pytest.raises(Refused, match="never leaves the built-in interface"):
        await send_on(client, settings, item, OUTSIDE, mode="redirect")
    with pytest.raises(Refused, match=r"not one valid email address|control characters"):
        await send_on(client, settings, first.id, "a@b.example, c@d.example", mode="forward")
    assert len(await mail.messages(OUTSIDE)) == 2
    await contact_command(client, first.id, "close_contact")
    await wait_status(client, first.id, ContactStatus.CLOSED)
    await record_history(client, first.id, "contact_forwarded_redirected_closed")

"""On real servers: intake pauses while `max_waiting` of an account's contacts wait (the mail
stays in the inbox, nothing is lost or acknowledged twice) and resumes by itself below the
mark; a sender's emails beyond `max_per_sender_per_hour` go to the flood queue."""

from __future__ import annotations

import uuid

import pytest

from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.mailbox import MailboxHealth, MailboxStatus
from ace_email.operations.agents_queues import contact_command
from ace_email.operations.mailboxes import accounts, describe_account
from ace_email.operations.registry import sync
from tests.conftest import Pipeline
from tests.e2e.test_pipeline import contact_id_of
from tests.recording import record_history
from tests.support import MailStack, account_settings, eventually, make_message, wait_status
from workflows.mailbox import MailboxWorkflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(mail: MailStack, temporal_address: str) -> Settings:
    return account_settings(
        name=f"support-{uuid.uuid4().hex[:8]}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-{uuid.uuid4().hex[:8]}",
        extra={"queues": [{"name": "flood", "description": "Floods, answered last"}]},
        account_extra={"max_waiting": 2, "max_per_sender_per_hour": 1, "flood_queue": "flood"},
    )


async def test_intake_pauses_at_max_waiting_and_a_flood_goes_to_its_queue(
    pipeline: Pipeline,
) -> None:
    client, mail, account = pipeline.client, pipeline.mail, pipeline.account
    await sync(client, pipeline.settings)
    first = make_message("First", "One.", sender="ann@example.org")
    again = make_message("Again", "Two.", sender="ann@example.org")
    await mail.send(first, sender="ann@example.org")
    await mail.send(again, sender="ann@example.org")
    await wait_status(client, contact_id_of(pipeline, first), ContactStatus.QUEUED)
    flooded = await wait_status(client, contact_id_of(pipeline, again), ContactStatus.QUEUED)
    assert flooded.queue == "flood"
    assert flooded.rule == (
        "flood: 2 emails from ann@example.org within the hour (max_per_sender_per_hour 1)"
    )

    third = make_message("Third", "Three.", sender="bo@example.org")
    await mail.send(third, sender="bo@example.org")
    handle = client.get_workflow_handle(ids.mailbox_workflow_id(account))

    async def throttled() -> MailboxStatus:
        await handle.signal(MailboxWorkflow.poll_now)
        status = await handle.query(MailboxWorkflow.status)
        assert status.health is MailboxHealth.THROTTLED, status
        return status

    await eventually(throttled, timeout=60)
    mail.settle()
    assert len(await mail.messages(mail.support)) == 1, "the third waits in the inbox"
    (row,) = [r for r in await accounts(client, pipeline.settings) if r["account"] == account]
    assert row["health"] == "throttled"
    assert "throttled: 2 of the account's contacts wait (max_waiting 2)" in describe_account(row)

    await contact_command(client, contact_id_of(pipeline, first), "close_contact")
    await wait_status(client, contact_id_of(pipeline, third), ContactStatus.QUEUED, timeout=60)
    status = await handle.query(MailboxWorkflow.status)
    assert status.health is MailboxHealth.OK and status.diverted == 1
    await record_history(client, handle.id, "mailbox_throttled_and_flooded")

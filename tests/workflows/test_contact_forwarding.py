"""Forward and redirect in ContactWorkflow with same-name fakes: once per request, recorded on
the contact, refused for a work item and for a contact no longer open."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from ace_email.contracts.base import Channel
from ace_email.contracts.contact import (
    ContactInput,
    ContactStatus,
    ForwardRequest,
    WorkItem,
)
from ace_email.contracts.mail_work import RedirectRequest, ReplyResult, SendReplyRequest
from tests.workflows.test_contact import POLICY, reach
from tests.workflows.test_contact_bounces import Mail, contact_id, customer_email, ref_for
from workflows.contact import ContactWorkflow


class Outbound(Mail):
    @activity.defn(name="send_reply")
    async def send_reply(self, request: SendReplyRequest) -> ReplyResult:
        self.calls.append(("forward", request.to))
        return ReplyResult(message_id=request.message_id, sent=True)

    @activity.defn(name="redirect_message")
    async def redirect_message(self, request: RedirectRequest) -> ReplyResult:
        self.calls.append(("redirect", (request.to, request.ref.folder)))
        return ReplyResult(message_id=request.resent_message_id, sent=True)

    def activities(self) -> list[Any]:
        return [*super().activities(), self.send_reply, self.redirect_message]


@pytest.fixture
async def outbound_worker(client: Client) -> AsyncIterator[tuple[str, Outbound]]:
    mail = Outbound()
    queue = f"contact-forwarding-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[ContactWorkflow], activities=mail.activities()
    ):
        yield queue, mail


async def test_forward_and_redirect_go_once_each_and_show_on_the_contact(
    client: Client, outbound_worker: tuple[str, Outbound]
) -> None:
    queue, mail = outbound_worker
    mail.analyses[1] = customer_email()
    contact = contact_id()
    handle = await client.start_workflow(
        ContactWorkflow.run,
        ContactInput(ref=ref_for(contact, 1), policy=POLICY, channel=Channel.EMAIL),
        id=contact,
        task_queue=queue,
    )
    await reach(handle, ContactStatus.QUEUED)
    forward = ForwardRequest(
        mode="forward", to="partner@example.net", message_id="<fwd-1@example.com>", by="alice"
    )
    redirect = ForwardRequest(
        mode="redirect", to="partner@example.net", message_id="<rsnt-1@example.com>"
    )
    for request in (forward, forward, redirect):
        result = await handle.execute_update(ContactWorkflow.forward, request)
        assert result.status is ContactStatus.QUEUED, "it stays where it is"
    state = await handle.query(ContactWorkflow.status)
    assert [(f.mode, f.message_id, f.by) for f in state.forwards] == [
        ("forward", "<fwd-1@example.com>", "alice"),
        ("redirect", "<rsnt-1@example.com>", ""),
    ]
    assert mail.named("redirect") == [("partner@example.net", "Processing")]
    await handle.execute_update(ContactWorkflow.close_contact)
    await handle.result()
    with pytest.raises(RPCError, match="already completed"):
        await handle.execute_update(ContactWorkflow.forward, forward)


async def test_a_work_item_is_never_forwarded(
    client: Client, outbound_worker: tuple[str, Outbound]
) -> None:
    queue, mail = outbound_worker
    mail.analyses[1] = customer_email()
    contact = contact_id()
    handle = await client.start_workflow(
        ContactWorkflow.run,
        ContactInput(
            ref=ref_for(contact, 1),
            policy=POLICY,
            channel=Channel.WORKITEM,
            work_item=WorkItem(queue="q"),
        ),
        id=contact,
        task_queue=queue,
    )
    await reach(handle, ContactStatus.QUEUED)
    request = ForwardRequest(mode="redirect", to="partner@example.net", message_id="<r@x>")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ContactWorkflow.forward, request)
    assert "never leaves the built-in interface" in str(refused.value.cause)
    assert mail.named("redirect") == []
    await handle.terminate()

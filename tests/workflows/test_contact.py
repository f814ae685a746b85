"""ContactWorkflow with its activities replaced by same-name fakes (as Temporal's samples test
workflows): the phase machine alone, on the dev server, in seconds."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from ace_email.contracts.base import Channel
from ace_email.contracts.contact import (
    ContactInput,
    ContactState,
    ContactStatus,
    FollowUpQuery,
    FollowUpTarget,
    RouteRequest,
)
from ace_email.contracts.ledger import ReserveReplyRequest, ReserveReplyResult
from ace_email.contracts.mail_work import (
    AutoReplyRequest,
    AutoReplyResult,
    ClaimRequest,
    ClaimResult,
    MoveRequest,
)
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Address, Analysis, MessageRef, Routing
from activities.routing import EnqueueRequest
from tests.support import eventually
from workflows.contact import ContactWorkflow

POLICY = AccountPolicy(
    name="support",
    address="support@example.com",
    return_address="support@example.com",
    queue="q",
)
REF = MessageRef(account="support", folder="INBOX", uidvalidity=1, uid=7, key="k" * 64, size=100)


@dataclass
class FakeMail:
    """The activities a contact calls, answering as a mailbox and a router would."""

    quarantine: str | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)

    @activity.defn(name="claim_message")
    async def claim_message(self, request: ClaimRequest) -> ClaimResult:
        self.calls.append(("claim", request.ref.uid))
        analysis = Analysis(
            sender=Address(name="Carla", addr="carla@example.org"),
            subject="My kettle leaks",
            size=100,
            quarantine_reason=self.quarantine,
        )
        folder = "Quarantine" if self.quarantine else "Processing"
        routing = (
            None
            if self.quarantine
            else Routing(rule="default", queue="q", auto_reply_template="default")
        )
        moved = request.ref.model_copy(update={"folder": folder})
        return ClaimResult(ref=moved, analysis=analysis, routing=routing)

    @activity.defn(name="reserve_auto_reply")
    async def reserve_auto_reply(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        self.calls.append(("reserve", request.sender))
        return ReserveReplyResult(allowed=True, reason="reserved")

    @activity.defn(name="send_auto_reply")
    async def send_auto_reply(self, request: AutoReplyRequest) -> AutoReplyResult:
        self.calls.append(("auto-reply", request.to))
        return AutoReplyResult(message_id="<ack@example.com>", sent=True)

    @activity.defn(name="enqueue")
    async def enqueue(self, request: EnqueueRequest) -> None:
        self.calls.append(("enqueue", (request.queue, request.entry.round)))

    @activity.defn(name="move_message")
    async def move_message(self, request: MoveRequest) -> MessageRef | None:
        self.calls.append(("move", request.folder))
        return request.ref.model_copy(update={"folder": request.folder})

    @activity.defn(name="find_follow_up")
    async def find_follow_up(self, query: FollowUpQuery) -> FollowUpTarget | None:
        return None

    def activities(self) -> list[Any]:
        return [
            self.claim_message,
            self.reserve_auto_reply,
            self.send_auto_reply,
            self.enqueue,
            self.move_message,
            self.find_follow_up,
        ]

    def named(self, name: str) -> list[Any]:
        return [arg for kind, arg in self.calls if kind == name]


@pytest.fixture
async def fake_worker(client: Client) -> AsyncIterator[tuple[str, FakeMail]]:
    fakes = FakeMail()
    queue = f"contact-fakes-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[ContactWorkflow], activities=fakes.activities()
    ):
        yield queue, fakes


async def start(client: Client, queue: str) -> WorkflowHandle[Any, ContactState]:
    return await client.start_workflow(
        ContactWorkflow.run,
        ContactInput(ref=REF, policy=POLICY, channel=Channel.EMAIL),
        id=f"contact-support-{uuid.uuid4().hex[:20]}",
        task_queue=queue,
    )


async def reach(handle: WorkflowHandle[Any, ContactState], status: ContactStatus) -> ContactState:
    async def check() -> ContactState:
        state = await handle.query(ContactWorkflow.status)
        assert state.status is status, state.status
        return state

    return await eventually(check, timeout=10, interval=0.05)


async def test_a_quarantined_email_ends_there_and_nothing_else_happens(
    client: Client, fake_worker: tuple[str, FakeMail]
) -> None:
    queue, fakes = fake_worker
    fakes.quarantine = "empty message"
    handle = await start(client, queue)
    state = await handle.result()
    assert state.status is ContactStatus.QUARANTINED
    assert state.quarantine_reason == "empty message"
    assert state.message is not None and state.message.folder == "Quarantine"
    assert [kind for kind, _ in fakes.calls] == ["claim"]


async def test_an_offer_that_times_out_returns_to_its_place_and_a_close_archives_it(
    client: Client, fake_worker: tuple[str, FakeMail]
) -> None:
    queue, fakes = fake_worker
    handle = await start(client, queue)
    await reach(handle, ContactStatus.QUEUED)

    async def acknowledged() -> bool:
        return fakes.named("auto-reply") == ["carla@example.org"]

    await eventually(acknowledged, timeout=10, interval=0.05)
    assert fakes.named("enqueue") == [("q", 1)]

    offer = RouteRequest(agent_id="bob", round=1, source="queue-q", offer_timeout_seconds=1)
    answer = await handle.execute_update(ContactWorkflow.route, offer)
    assert answer.accepted
    offered = await reach(handle, ContactStatus.OFFERED)
    assert offered.agent == "bob" and offered.offer_expires_at is not None
    stale = offer.model_copy(update={"agent_id": "alice"})
    refused = await handle.execute_update(ContactWorkflow.route, stale)
    assert not refused.accepted, "one agent at a time"

    back = await reach(handle, ContactStatus.QUEUED)  # the offer timed out
    assert back.excluded_agents == ["bob"] and back.round == 2
    assert back.last_error == "offer to bob timed out"

    async def requeued() -> bool:  # its status says queued a moment before the queue hears
        assert fakes.named("enqueue") == [("q", 1), ("q", 2)], "back in its queue, round 2"
        return True

    await eventually(requeued, timeout=10, interval=0.05)

    closed = await handle.execute_update(ContactWorkflow.close_contact)
    assert closed.status is ContactStatus.CLOSED
    state = await handle.result()
    assert state.status is ContactStatus.CLOSED and state.closed_at is not None
    assert fakes.named("move") == ["Archive"]

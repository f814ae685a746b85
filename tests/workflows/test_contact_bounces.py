"""Delivery reports on the account's own mail, in ContactWorkflow with same-name fakes: the
report joins the contact whose message it is about, a hard bounce of what went to the customer
is suppressed in the ledger and shown, and a bounce of a delivery to an agent's own mailbox
sends the contact back to its queue and the agent an alarm."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from ace_email.contracts import ids
from ace_email.contracts.base import Channel
from ace_email.contracts.contact import (
    ContactInput,
    ContactState,
    ContactStatus,
    FollowUpQuery,
    FollowUpTarget,
    RouteRequest,
)
from ace_email.contracts.ledger import ReserveReplyRequest, ReserveReplyResult, SuppressRequest
from ace_email.contracts.mail_work import (
    ArchiveRequest,
    AutoReplyRequest,
    AutoReplyResult,
    ClaimRequest,
    ClaimResult,
    DeliverRequest,
    DeliverResult,
    MoveRequest,
)
from ace_email.contracts.message import (
    Address,
    Analysis,
    Bounce,
    BounceRecipient,
    MessageRef,
    Routing,
)
from ace_email.contracts.queues import MailAlarm
from activities.routing import EnqueueRequest, HoldRequest
from tests.support import eventually
from tests.workflows.test_contact import POLICY, reach
from workflows.contact import ContactWorkflow

CUSTOMER = "carla@example.org"
DEAD = BounceRecipient(
    address=CUSTOMER,
    status="5.1.1",
    reply_code=550,
    reason="userunknown",
    hard=True,
    diagnostic="550 5.1.1 <carla@example.org>: Recipient address rejected: User unknown",
)


def contact_id() -> str:
    return f"contact-support-{uuid.uuid4().hex[:20]}"


def key_of(contact: str) -> str:
    return ids.contact_key(contact, "support")


def ref_for(contact: str, uid: int) -> MessageRef:
    return MessageRef(
        account="support", folder="INBOX", uidvalidity=1, uid=uid, key=key_of(contact), size=100
    )


@dataclass
class Mail:
    """Fakes for the activities: each uid's analysis, the follow-up target to find."""

    analyses: dict[int, Analysis] = field(default_factory=dict)
    target: FollowUpTarget | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)

    @activity.defn(name="claim_message")
    async def claim_message(self, request: ClaimRequest) -> ClaimResult:
        analysis = self.analyses[request.ref.uid]
        moved = request.ref.model_copy(update={"folder": "Processing"})
        routing = Routing(rule="default", queue="q", auto_reply_template="default")
        return ClaimResult(ref=moved, analysis=analysis, routing=routing)

    @activity.defn(name="reserve_auto_reply")
    async def reserve_auto_reply(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        return ReserveReplyResult(allowed=True, reason="reserved")

    @activity.defn(name="send_auto_reply")
    async def send_auto_reply(self, request: AutoReplyRequest) -> AutoReplyResult:
        self.calls.append(("auto-reply", request.to))
        return AutoReplyResult(message_id="<ack@example.com>", sent=True)

    @activity.defn(name="suppress_addresses")
    async def suppress_addresses(self, request: SuppressRequest) -> int:
        self.calls.append(("suppress", request))
        return len(request.suppressions)

    @activity.defn(name="enqueue")
    async def enqueue(self, request: EnqueueRequest) -> None:
        self.calls.append(("enqueue", (request.queue, request.entry.round, request.entry.excluded)))

    @activity.defn(name="hold")
    async def hold(self, request: HoldRequest) -> None:
        self.calls.append(("hold", request.agent_id))

    @activity.defn(name="deliver_to_agent")
    async def deliver_to_agent(self, request: DeliverRequest) -> DeliverResult:
        self.calls.append(("deliver", request.agent_email))
        archived = request.ref.model_copy(update={"folder": "Archive"})
        return DeliverResult(resent_message_id="<resent@example.com>", archived=archived)

    @activity.defn(name="move_message")
    async def move_message(self, request: MoveRequest) -> MessageRef | None:
        self.calls.append(("move", request.folder))
        return request.ref.model_copy(update={"folder": request.folder})

    @activity.defn(name="archive_message")
    async def archive_message(self, request: ArchiveRequest) -> MessageRef | None:
        self.calls.append(("archive", request.ref.uid))
        return request.ref.model_copy(update={"folder": request.archive_folder})

    @activity.defn(name="find_follow_up")
    async def find_follow_up(self, query: FollowUpQuery) -> FollowUpTarget | None:
        self.calls.append(("find", query.message_ids))
        return self.target

    def activities(self) -> list[Any]:
        return [
            self.claim_message,
            self.reserve_auto_reply,
            self.send_auto_reply,
            self.suppress_addresses,
            self.enqueue,
            self.hold,
            self.deliver_to_agent,
            self.move_message,
            self.archive_message,
            self.find_follow_up,
        ]

    def named(self, name: str) -> list[Any]:
        return [arg for kind, arg in self.calls if kind == name]


@workflow.defn(name="AgentWorkflow", sandboxed=False)
class AgentStandIn:
    """Only what a contact tells its agent: the alarm of a bounced delivery."""

    def __init__(self) -> None:
        self.alarms: list[MailAlarm] = []

    @workflow.run
    async def run(self) -> list[MailAlarm]:
        await workflow.wait_condition(lambda: bool(self.alarms))
        return self.alarms

    @workflow.signal
    def mail_bounced(self, alarm: MailAlarm) -> None:
        self.alarms.append(alarm)

    @workflow.signal
    def release(self, release: Any) -> None:
        pass


@pytest.fixture
async def mail_worker(client: Client) -> AsyncIterator[tuple[str, Mail]]:
    mail = Mail()
    queue = f"contact-bounces-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ContactWorkflow, AgentStandIn],
        activities=mail.activities(),
    ):
        yield queue, mail


async def start(
    client: Client, queue: str, contact: str, uid: int
) -> WorkflowHandle[Any, ContactState]:
    return await client.start_workflow(
        ContactWorkflow.run,
        ContactInput(ref=ref_for(contact, uid), policy=POLICY, channel=Channel.EMAIL),
        id=contact,
        task_queue=queue,
    )


def customer_email() -> Analysis:
    return Analysis(
        sender=Address(name="Carla", addr=CUSTOMER), subject="My kettle leaks", size=100
    )


def report(original_message_id: str, recipient: BounceRecipient = DEAD) -> Analysis:
    return Analysis(
        sender=Address(name="Mail Delivery System", addr="MAILER-DAEMON@mx.example.org"),
        subject="Undelivered Mail Returned to Sender",
        size=3000,
        automatic=True,
        automatic_reasons=["bounce"],
        bounce=Bounce(
            kind="bounce", original_message_id=original_message_id, recipients=[recipient]
        ),
    )


async def test_a_hard_bounce_of_the_automatic_reply_joins_its_contact_and_is_suppressed(
    client: Client, mail_worker: tuple[str, Mail]
) -> None:
    queue, mail = mail_worker
    original, bounced = contact_id(), contact_id()
    mail.analyses[1] = customer_email()
    first = await start(client, queue, original, 1)
    await reach(first, ContactStatus.QUEUED)

    reply_id = ids.auto_reply_message_id("support", key_of(original), POLICY.return_address)
    mail.analyses[2] = report(reply_id)
    mail.target = FollowUpTarget(contact_id=original, status=ContactStatus.QUEUED, running=True)
    second = await start(client, queue, bounced, 2)
    joined = await second.result()
    assert joined.status is ContactStatus.JOINED and joined.joined_to == original
    assert joined.bounce_of == original and joined.bounce is not None
    assert mail.named("find")[-1][0] == reply_id, "the reported message is looked up first"
    assert mail.named("archive") == [2], "the report is archived, never queued"
    (suppressed,) = mail.named("suppress")
    (suppression,) = suppressed.suppressions
    assert suppression.address == CUSTOMER
    assert suppression.reason == f"hard bounce 5.1.1 userunknown, reported by contact {bounced}"

    async def shown() -> ContactState:
        state = await first.query(ContactWorkflow.status)
        assert state.bounces and state.undeliverable
        return state

    state = await eventually(shown, timeout=10, interval=0.05)
    (note,) = state.bounces
    assert (note.sent_as, note.kind, note.hard, note.contact_id) == (
        "autoreply",
        "bounce",
        True,
        bounced,
    )
    (dead,) = state.undeliverable
    assert dead.address == CUSTOMER and dead.reason.startswith("hard bounce 5.1.1 userunknown: ")
    assert state.status is ContactStatus.QUEUED, "the customer's contact goes on as it was"
    await first.terminate()


async def test_a_report_on_a_contact_that_has_ended_is_filed_with_it_never_queued(
    client: Client, mail_worker: tuple[str, Mail]
) -> None:
    queue, mail = mail_worker
    ended, bounced = contact_id(), contact_id()
    reply_id = ids.auto_reply_message_id("support", key_of(ended), POLICY.return_address)
    mail.analyses[2] = report(reply_id)
    mail.target = None  # closed long ago: no open contact to join
    state = await (await start(client, queue, bounced, 2)).result()
    assert state.status is ContactStatus.JOINED and state.joined_to == ended
    assert state.bounce_of == ended and mail.named("archive") == [2]
    assert mail.named("enqueue") == [], "never queued for an agent"
    assert len(mail.named("suppress")) == 1, "the address is suppressed all the same"


async def test_a_bounced_delivery_to_an_agent_sends_the_contact_back_and_alarms_the_agent(
    client: Client, mail_worker: tuple[str, Mail]
) -> None:
    queue, mail = mail_worker
    original, bounced = contact_id(), contact_id()
    agent = f"agent-{uuid.uuid4().hex[:6]}"
    agent_handle = await client.start_workflow(
        AgentStandIn.run, id=ids.agent_workflow_id(agent), task_queue=queue
    )
    mail.analyses[1] = customer_email()
    first = await start(client, queue, original, 1)
    await reach(first, ContactStatus.QUEUED)
    route = RouteRequest(agent_id=agent, agent_email="bob@desk.example.com", round=1, source="q")
    assert (await first.execute_update(ContactWorkflow.route, route)).accepted
    await reach(first, ContactStatus.DELIVERED)

    resent = ids.resent_message_id("support", key_of(original), agent, POLICY.return_address)
    recipient = DEAD.model_copy(update={"address": "bob@desk.example.com"})
    mail.analyses[2] = report(resent, recipient)
    mail.target = FollowUpTarget(
        contact_id=original, status=ContactStatus.DELIVERED, running=True, agent_id=agent
    )
    second = await start(client, queue, bounced, 2)
    assert (await second.result()).status is ContactStatus.JOINED
    assert mail.named("suppress") == [], "an agent's address is no customer's"

    back = await reach(first, ContactStatus.QUEUED)
    assert back.excluded_agents == [agent] and back.agent is None
    assert back.undeliverable == []
    (alarm,) = await agent_handle.result()
    assert alarm.contact_id == original and alarm.address == "bob@desk.example.com"
    assert alarm.detail == "hard bounce 5.1.1 userunknown"
    assert mail.named("enqueue")[-1] == ("q", 2, [agent])
    assert mail.named("move")[-1] == "Processing", "the message is back for the next agent"
    await first.terminate()

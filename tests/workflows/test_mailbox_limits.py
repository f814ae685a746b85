"""MailboxWorkflow's protection against floods, with fake activities and a stand-in contact:
intake pauses while `max_waiting` contacts wait and resumes by itself; a sender's emails beyond
`max_per_sender_per_hour` go to the flood queue."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from ace_email.contracts.contact import ContactInput
from ace_email.contracts.mailbox import (
    AccountPolicy,
    MailboxCursor,
    MailboxHealth,
    MailboxInput,
    MailboxStatus,
    PollRequest,
    PollResult,
    WaitingCount,
)
from ace_email.contracts.message import Address, Analysis, MessageHeadline, MessageRef, Routing
from tests.support import eventually
from workflows.mailbox import MailboxWorkflow

POLICY = AccountPolicy(
    name="support",
    address="support@example.com",
    return_address="support@example.com",
    queue="q",
    poll_interval_seconds=0.2,
    idle=False,
)
STARTED: dict[str, ContactInput] = {}


@workflow.defn(name="ContactWorkflow", sandboxed=False)
class ContactStandIn:
    """Records what the poll loop started it with."""

    @workflow.run
    async def run(self, contact: ContactInput) -> None:
        STARTED[workflow.info().workflow_id] = contact


def headline(uid: int, sender: str) -> MessageHeadline:
    ref = MessageRef(
        account="support", folder="INBOX", uidvalidity=1, uid=uid, key=uuid.uuid4().hex * 2
    )
    return MessageHeadline(
        ref=ref,
        sender=sender,
        subject=f"Question {uid}",
        analysis=Analysis(sender=Address(addr=sender), subject=f"Question {uid}"),
        routing=Routing(queue="q"),
    )


@dataclass
class Inbox:
    waiting: int = 0
    mail: list[MessageHeadline] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)

    @activity.defn(name="count_waiting")
    async def count_waiting(self, request: WaitingCount) -> int:
        return self.waiting

    @activity.defn(name="poll_mailbox")
    async def poll_mailbox(self, request: PollRequest) -> PollResult:
        self.polls.append(request.max_messages)
        last = request.cursor.last_uid
        new = [m for m in self.mail if m.ref.uid > last][: request.max_messages]
        cursor = MailboxCursor(uidvalidity=1, last_uid=new[-1].ref.uid if new else last)
        return PollResult(cursor=cursor, messages=new)


async def run_mailbox(client: Client, inbox: Inbox, policy: AccountPolicy) -> tuple[str, Worker]:
    queue = f"mailbox-limits-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=queue,
        workflows=[MailboxWorkflow, ContactStandIn],
        activities=[inbox.count_waiting, inbox.poll_mailbox],
    )
    return queue, worker


async def test_intake_pauses_while_max_waiting_contacts_wait_and_resumes_by_itself(
    client: Client,
) -> None:
    inbox = Inbox(waiting=3, mail=[headline(uid, f"c{uid}@example.org") for uid in (1, 2, 3)])
    policy = POLICY.model_copy(update={"max_waiting": 3})
    queue, worker = await run_mailbox(client, inbox, policy)
    async with worker:
        handle = await client.start_workflow(
            MailboxWorkflow.run,
            MailboxInput(policy=policy),
            id=f"mailbox-{queue}",
            task_queue=queue,
        )

        async def throttled() -> MailboxStatus:
            status = await handle.query(MailboxWorkflow.status)
            assert status.health is MailboxHealth.THROTTLED, status
            return status

        status = await eventually(throttled, timeout=10, interval=0.05)
        assert status.throttled == (
            "3 of the account's contacts wait (max_waiting 3); new mail stays in INBOX until "
            "fewer wait"
        )
        assert inbox.polls == [], "nothing taken while throttled"

        inbox.waiting = 1

        async def resumed() -> MailboxStatus:
            status = await handle.query(MailboxWorkflow.status)
            assert status.health is MailboxHealth.OK and status.contacts_started == 2, status
            return status

        await eventually(resumed, timeout=10, interval=0.05)
        assert inbox.polls[0] == 2, "at most as many as there is room for"
        await handle.signal(MailboxWorkflow.stop)
        await handle.result()


async def test_a_senders_emails_beyond_the_hourly_limit_go_to_the_flood_queue(
    client: Client,
) -> None:
    flooder = f"bot-{uuid.uuid4().hex[:6]}@example.net"
    mail = [headline(1, flooder), headline(2, "carla@example.org"), headline(3, flooder)]
    mail += [headline(4, flooder.upper())]
    inbox = Inbox(mail=mail)
    policy = POLICY.model_copy(update={"max_per_sender_per_hour": 2, "flood_queue": "flood"})
    queue, worker = await run_mailbox(client, inbox, policy)
    async with worker:
        handle = await client.start_workflow(
            MailboxWorkflow.run,
            MailboxInput(policy=policy),
            id=f"mailbox-{queue}",
            task_queue=queue,
        )

        async def all_started() -> MailboxStatus:
            status = await handle.query(MailboxWorkflow.status)
            assert status.contacts_started == 4, status
            return status

        status = await eventually(all_started, timeout=10, interval=0.05)
        assert status.diverted == 1
        keys = {m.ref.key: m.ref.uid for m in mail}

        async def recorded() -> dict[int, Routing | None]:
            routes = {keys[c.ref.key]: c.routing for c in STARTED.values() if c.ref.key in keys}
            assert len(routes) == 4, routes
            return routes

        routes = await eventually(recorded, timeout=10, interval=0.05)
        queues = [route.queue if route else None for _, route in sorted(routes.items())]
        assert queues == ["q", "q", "q", "flood"]
        flooded = routes[4]
        assert flooded is not None and flooded.rule == (
            f"flood: 3 emails from {flooder} within the hour (max_per_sender_per_hour 2)"
        )
        await handle.signal(MailboxWorkflow.stop)
        await handle.result()

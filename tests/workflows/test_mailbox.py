"""MailboxWorkflow with a fake poll: a failing mailbox backs off, says so, and recovers by
itself; a stop ends the loop. On the dev server, in about a second."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from ace_email.contracts.mailbox import (
    AccountPolicy,
    MailboxCursor,
    MailboxHealth,
    MailboxInput,
    MailboxStatus,
    PollRequest,
    PollResult,
    WatchRequest,
    WatchResult,
)
from tests.support import eventually
from workflows.contact import ContactWorkflow
from workflows.mailbox import MailboxWorkflow

POLICY = AccountPolicy(
    name="support",
    address="support@example.com",
    return_address="support@example.com",
    queue="q",
    poll_interval_seconds=0.2,
)


@dataclass
class FailingThenFine:
    """A mailbox whose first `failures` polls are refused logins."""

    failures: int = 2
    polls: list[int] = field(default_factory=list)

    @activity.defn(name="poll_mailbox")
    async def poll_mailbox(self, request: PollRequest) -> PollResult:
        self.polls.append(len(self.polls) + 1)
        if len(self.polls) <= self.failures:
            raise ApplicationError("support: IMAP login refused", type="ImapLoginFailed")
        return PollResult(cursor=MailboxCursor(uidvalidity=1, last_uid=0), waiting=0)


async def test_a_failing_mailbox_backs_off_says_so_and_recovers_by_itself(client: Client) -> None:
    queue = f"mailbox-fakes-{uuid.uuid4().hex[:8]}"
    mailbox = FailingThenFine()
    async with Worker(
        client,
        task_queue=queue,
        workflows=[MailboxWorkflow, ContactWorkflow],
        activities=[mailbox.poll_mailbox],
    ):
        handle = await client.start_workflow(
            MailboxWorkflow.run,
            MailboxInput(policy=POLICY),
            id=f"mailbox-support-{queue}",
            task_queue=queue,
        )

        async def failing() -> MailboxStatus:
            status = await handle.query(MailboxWorkflow.status)
            assert status.health is MailboxHealth.FAILING and status.failures >= 1, status
            return status

        seen = await eventually(failing, timeout=10, interval=0.05)
        assert seen.last_error == "support: IMAP login refused" and seen.failing_since

        async def recovered() -> MailboxStatus:
            status = await handle.query(MailboxWorkflow.status)
            assert status.health is MailboxHealth.OK, status
            return status

        fine = await eventually(recovered, timeout=10, interval=0.05)
        assert fine.failures == 0 and fine.last_error is None and fine.last_success_at
        await handle.signal(MailboxWorkflow.stop)
        final = await handle.result()
        assert final.stopping and final.polls >= 3
        assert mailbox.polls[:3] == [1, 2, 3], "one try per failed poll: a refused login waits"


@dataclass
class PushedMailbox:
    """An inbox whose watch tells of new mail once, then waits until it is cancelled."""

    client: Client
    offered: bool = True
    polls: int = 0
    watches: int = 0
    cancelled: bool = False

    @activity.defn(name="poll_mailbox")
    async def poll_mailbox(self, request: PollRequest) -> PollResult:
        self.polls += 1
        return PollResult(cursor=request.cursor)

    @activity.defn(name="watch_mailbox")
    async def watch_mailbox(self, request: WatchRequest) -> WatchResult:
        self.watches += 1
        if not self.offered:
            return WatchResult(offered=False)
        workflow_id = activity.info().workflow_id or ""
        await asyncio.sleep(0.3)
        await self.client.get_workflow_handle(workflow_id).signal("poll_now")
        try:
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_the_watch_asks_for_a_poll_long_before_the_timer(client: Client) -> None:
    queue = f"mailbox-push-{uuid.uuid4().hex[:8]}"
    mailbox = PushedMailbox(client)
    policy = POLICY.model_copy(update={"poll_interval_seconds": 600})
    async with Worker(
        client,
        task_queue=queue,
        workflows=[MailboxWorkflow, ContactWorkflow],
        activities=[mailbox.poll_mailbox, mailbox.watch_mailbox],
    ):
        handle = await client.start_workflow(
            MailboxWorkflow.run, MailboxInput(policy=policy), id=queue, task_queue=queue
        )

        async def pushed() -> bool:
            return mailbox.polls >= 2

        await eventually(pushed, timeout=10, interval=0.05)
        status = await handle.query(MailboxWorkflow.status)
        assert status.push == "IMAP IDLE" and mailbox.watches == 1
        await handle.signal(MailboxWorkflow.stop)
        final = await handle.result()
        assert final.push == "IMAP IDLE", "a watch the loop ends itself is no failure"

        async def cancelled() -> bool:
            return mailbox.cancelled

        await eventually(cancelled, timeout=20, interval=0.1)  # told at the next heartbeat


async def test_a_server_without_idle_is_polled_and_says_so(client: Client) -> None:
    queue = f"mailbox-no-idle-{uuid.uuid4().hex[:8]}"
    mailbox = PushedMailbox(client, offered=False)
    async with Worker(
        client,
        task_queue=queue,
        workflows=[MailboxWorkflow, ContactWorkflow],
        activities=[mailbox.poll_mailbox, mailbox.watch_mailbox],
    ):
        handle = await client.start_workflow(
            MailboxWorkflow.run, MailboxInput(policy=POLICY), id=queue, task_queue=queue
        )

        async def polled() -> MailboxStatus:
            status = await handle.query(MailboxWorkflow.status)
            assert mailbox.polls >= 3 and status.push, status
            return status

        status = await eventually(polled, timeout=10, interval=0.05)
        assert status.push == "not offered by the IMAP server; polling only"
        assert mailbox.watches == 1
        await handle.signal(MailboxWorkflow.stop)
        await handle.result()

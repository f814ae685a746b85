"""The automatic-reply ledger by itself: one reply per sender per period, a cap per hour, the
same answer for the same contact, continue-as-new carrying its entries. On the dev server with
a period of seconds (Temporal's time-skipping test server takes neither ace-email's search
attributes nor, here, its updates)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from ace_email.contracts.ledger import (
    LedgerInput,
    ReserveReplyBatch,
    ReserveReplyRequest,
    Suppression,
    SuppressRequest,
)
from workflows.auto_reply_ledger import AutoReplyLedgerWorkflow

PERIOD = timedelta(seconds=2)


async def reserve(
    client: Client, workflow_id: str, contact: str, sender: str, cap: int = 100
) -> str:
    request = ReserveReplyRequest(
        account="support",
        contact_id=contact,
        sender=sender,
        per_sender_period=PERIOD,
        cap_per_hour=cap,
    )
    handle = client.get_workflow_handle(workflow_id)
    answer = await handle.execute_update(AutoReplyLedgerWorkflow.reserve, request)
    return "allowed" if answer.allowed else answer.reason


async def test_one_reply_per_sender_per_period_a_cap_per_hour_across_continue_as_new(
    client: Client,
) -> None:
    queue = f"ledger-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[AutoReplyLedgerWorkflow]):
        handle = await client.start_workflow(
            AutoReplyLedgerWorkflow.run,
            LedgerInput(account="support", updates_per_run=3),
            id=f"ledger-{queue}",
            task_queue=queue,
        )
        wid = handle.id
        assert await reserve(client, wid, "c1", "Carla@example.org") == "allowed"
        assert await reserve(client, wid, "c1", "carla@example.org") == "allowed", "same contact"
        refused = await reserve(client, wid, "c2", "carla@example.org")
        assert refused.startswith("not sent: carla@example.org got an automatic reply at ")
        assert "(contact c1); at most one per sender per" in refused

        assert await reserve(client, wid, "c3", "a@example.org", cap=2) == "allowed"
        capped = await reserve(client, wid, "c4", "b@example.org", cap=2)
        assert capped == "not sent: the account's cap of 2 automatic replies per hour is reached"
        entries = await handle.query(AutoReplyLedgerWorkflow.entries)
        assert [e.contact_id for e in entries] == ["c1", "c3"], "kept through continue-as-new"
        await asyncio.sleep(PERIOD.total_seconds() + 0.5)
        assert await reserve(client, wid, "c5", "carla@example.org") == "allowed"


async def test_many_reservations_in_one_update_are_answered_in_order(client: Client) -> None:
    queue = f"ledger-many-{uuid.uuid4().hex[:8]}"

    def request(contact: str, sender: str) -> ReserveReplyRequest:
        return ReserveReplyRequest(
            account="support", contact_id=contact, sender=sender, per_sender_period=PERIOD
        )

    async with Worker(client, task_queue=queue, workflows=[AutoReplyLedgerWorkflow]):
        handle = await client.start_workflow(
            AutoReplyLedgerWorkflow.run,
            LedgerInput(account="support"),
            id=f"ledger-{queue}",
            task_queue=queue,
        )
        batch = ReserveReplyBatch(
            requests=[
                request("c1", "carla@example.org"),
                request("c2", "Carla@example.org"),
                request("c3", "dan@example.org"),
                request("c1", "carla@example.org"),
            ]
        )
        answers = await handle.execute_update(AutoReplyLedgerWorkflow.reserve_many, batch)
        assert [a.allowed for a in answers.results] == [True, False, True, True]
        assert "(contact c1)" in answers.results[1].reason
        single = await reserve(client, handle.id, "c2", "carla@example.org")
        assert single.startswith("not sent:"), "one ledger, whichever update asked"


async def test_an_address_that_bounced_hard_gets_no_automatic_reply_until_its_time_is_up(
    client: Client,
) -> None:
    queue = f"ledger-suppress-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[AutoReplyLedgerWorkflow]):
        handle = await client.start_workflow(
            AutoReplyLedgerWorkflow.run,
            LedgerInput(account="support", updates_per_run=2),
            id=f"ledger-{queue}",
            task_queue=queue,
        )
        until = datetime.now(UTC) + timedelta(seconds=3)
        dead = Suppression(
            address="Gone@Example.org", until=until, reason="hard bounce 5.1.1 userunknown"
        )
        request = SuppressRequest(account="support", suppressions=[dead])
        assert await handle.execute_update(AutoReplyLedgerWorkflow.suppress, request) == 1
        assert await handle.execute_update(AutoReplyLedgerWorkflow.suppress, request) == 1
        refused = await reserve(client, handle.id, "c1", "gone@example.org")
        assert refused == (
            f"not sent: gone@example.org is undeliverable until {until:%Y-%m-%d} "
            "(hard bounce 5.1.1 userunknown)"
        )
        kept = await handle.query(AutoReplyLedgerWorkflow.suppressed)
        assert [s.address for s in kept] == ["gone@example.org"], "through continue-as-new"
        assert await reserve(client, handle.id, "c2", "alive@example.org") == "allowed"
        await asyncio.sleep(3.5)
        assert await reserve(client, handle.id, "c3", "gone@example.org") == "allowed"
        assert await handle.query(AutoReplyLedgerWorkflow.suppressed) == []

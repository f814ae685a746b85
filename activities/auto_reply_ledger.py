"""Reserving an automatic reply in the account's ledger (an update-with-start on Temporal)."""

from __future__ import annotations

import asyncio
import random

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from ace_email import ids
from ace_email.models import LedgerInput, ReserveReplyRequest, ReserveReplyResult
from workflows.auto_reply_ledger import AutoReplyLedgerWorkflow

BUSY_RETRY_SECONDS = 20.0
"""How long a reservation keeps asking a busy ledger before it leaves the rest to Temporal's
retry policy. Temporal admits a bounded number of updates in flight per workflow (10 by
default), and aborts the ones in flight when the ledger continues as new or the server
restarts; each answer takes milliseconds, so asking again soon, with jitter, beats the
activity's exponential back-off."""
BUSY = {RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE}


class LedgerActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    @activity.defn
    async def reserve_auto_reply(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        """Ask the ledger, starting it if it is not running. Safe to retry: the ledger answers
        the same contact the same way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_RETRY_SECONDS
        pause = 0.05
        while True:
            try:
                return await self._reserve(request)
            except RPCError as exc:
                if exc.status not in BUSY or loop.time() > deadline:
                    raise
            await asyncio.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, 1.0)

    async def _reserve(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        start = WithStartWorkflowOperation(
            AutoReplyLedgerWorkflow.run,
            LedgerInput(account=request.account),
            id=ids.ledger_workflow_id(request.account),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_queue=self._task_queue,
            static_summary=f"Automatic-reply limits of account {request.account}",
        )
        return await self._client.execute_update_with_start_workflow(
            AutoReplyLedgerWorkflow.reserve, request, start_workflow_operation=start
        )

"""Reserving an automatic reply in the account's ledger (an update-with-start on Temporal)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import timedelta

from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from ace_email.contracts import ids
from ace_email.contracts.ledger import LedgerInput, ReserveReplyRequest, ReserveReplyResult
from workflows.auto_reply_ledger import AutoReplyLedgerWorkflow

BUSY_RETRY_SECONDS = 20.0
BUSY = {RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE}
RPC_TIMEOUT = timedelta(seconds=10)


class LedgerActivities:
    """Reservations go to an account's ledger one at a time from each worker.

    The ledger is one workflow per account, and Temporal admits ten updates in flight per
    workflow; it aborts those in flight when the ledger's workflow task is lost (a worker
    killed, a server restart) or it continues as new. A burst of contacts that all asked at
    once, and again at once on every refusal, would keep the ledger's tasks from ever
    completing. One at a time per worker, each answer takes milliseconds, and a busy or
    restarting ledger is asked again after a pause with jitter.
    """

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue
        self._turns: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    @activity.defn
    async def reserve_auto_reply(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        """Ask the ledger, starting it if it is not running. Safe to retry: the ledger answers
        the same contact the same way."""
        loop = asyncio.get_running_loop()
        async with self._turns[request.account]:
            deadline = loop.time() + BUSY_RETRY_SECONDS
            pause = 0.2
            while True:
                try:
                    return await self._reserve(request)
                except WorkflowUpdateRPCTimeoutOrCancelledError:
                    if loop.time() > deadline:
                        raise
                except RPCError as exc:
                    if exc.status not in BUSY or loop.time() > deadline:
                        raise
                await asyncio.sleep(random.uniform(pause / 2, pause))
                pause = min(pause * 2, 2.0)

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
            AutoReplyLedgerWorkflow.reserve,
            request,
            start_workflow_operation=start,
            rpc_timeout=RPC_TIMEOUT,
        )

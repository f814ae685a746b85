"""Reserving an automatic reply in the account's ledger (an update-with-start on Temporal)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
)
from temporalio.common import WorkflowIDConflictPolicy

from ace_email.contracts import ids
from ace_email.contracts.ledger import LedgerInput, ReserveReplyRequest, ReserveReplyResult
from ace_email.temporal.calls import RPC_TIMEOUT, busy_retried

BUSY_RETRY_SECONDS = 20.0


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
        async with self._turns[request.account]:
            return await busy_retried(lambda: self._reserve(request), patience=BUSY_RETRY_SECONDS)

    async def _reserve(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            "AutoReplyLedgerWorkflow",
            LedgerInput(account=request.account),
            id=ids.ledger_workflow_id(request.account),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_queue=self._task_queue,
            static_summary=f"Automatic-reply limits of account {request.account}",
        )
        answer: ReserveReplyResult = await self._client.execute_update_with_start_workflow(
            "reserve",
            request,
            result_type=ReserveReplyResult,
            start_workflow_operation=start,
            rpc_timeout=RPC_TIMEOUT,
        )
        return answer

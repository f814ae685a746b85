"""Reserving an automatic reply in the account's ledger (an update-with-start on Temporal):
as an activity of its own (contacts begun before the reply activity reserved), and as the
`ReplyLedger` the reply activity asks before it sends; and telling it of addresses that
bounced hard."""

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
from temporalio.exceptions import ApplicationError

from ace_email.contracts import ids
from ace_email.contracts.ledger import (
    LedgerInput,
    ReserveReplyAnswers,
    ReserveReplyBatch,
    ReserveReplyRequest,
    ReserveReplyResult,
    SuppressRequest,
)
from ace_email.temporal.calls import RPC_TIMEOUT, busy_retried
from activities.batching import Batcher

BUSY_RETRY_SECONDS = 20.0


class ReplyLedger:
    """Reservations go to an account's ledger in batches, one batch in flight per worker.

    The ledger is one workflow per account, and Temporal admits ten updates in flight per
    workflow; it aborts those in flight when the ledger's workflow task is lost (a worker
    killed, a server restart) or it continues as new. A burst of contacts that all asked at
    once, and again at once on every refusal, would keep the ledger's tasks from ever
    completing. One update at a time per worker, carrying every reservation that waited for
    it, each answer takes milliseconds however many contacts ask; a busy or restarting ledger
    is asked again after a pause with jitter.
    """

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue
        self._batchers: defaultdict[str, Batcher[ReserveReplyRequest, ReserveReplyResult]] = (
            defaultdict(self._batcher)
        )

    def _batcher(self) -> Batcher[ReserveReplyRequest, ReserveReplyResult]:
        return Batcher(self._reserve_many, most=100)

    async def reserve(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        """May this contact send its automatic reply? Safe to ask again: the ledger answers
        the same contact the same way.

        Within an activity, a worker that begins to shut down stops waiting and fails the try
        (retried on another worker): this worker no longer runs the ledger's workflow tasks,
        and the answer could take longer than the shutdown may."""
        asking = asyncio.ensure_future(self._batchers[request.account].ask(request))
        if not activity.in_activity():
            return await asking
        shutdown = asyncio.ensure_future(activity.wait_for_worker_shutdown())
        either: set[asyncio.Future[Any]] = {asking, shutdown}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        shutdown.cancel()
        if not asking.done():
            asking.cancel()
            raise ApplicationError(
                f"{request.account}: this worker is shutting down before the reply ledger "
                "answered; another worker asks again",
                type="WorkerShuttingDown",
            )
        return asking.result()

    async def _reserve_many(self, requests: list[ReserveReplyRequest]) -> list[ReserveReplyResult]:
        account = requests[0].account

        async def ask() -> ReserveReplyAnswers:
            start = self._start(account)
            answers: ReserveReplyAnswers = await self._client.execute_update_with_start_workflow(
                "reserve_many",
                ReserveReplyBatch(requests=requests),
                result_type=ReserveReplyAnswers,
                start_workflow_operation=start,
                rpc_timeout=RPC_TIMEOUT,
            )
            return answers

        return (await busy_retried(ask, patience=BUSY_RETRY_SECONDS)).results

    async def suppress(self, request: SuppressRequest) -> int:
        """Tell the account's ledger, starting it if need be, of addresses that bounced hard.
        Safe to repeat: a suppression already known is kept (or extended)."""

        async def ask() -> int:
            result: int = await self._client.execute_update_with_start_workflow(
                "suppress",
                request,
                result_type=int,
                start_workflow_operation=self._start(request.account),
                rpc_timeout=RPC_TIMEOUT,
            )
            return result

        return await busy_retried(ask, patience=BUSY_RETRY_SECONDS)

    def _start(self, account: str) -> WithStartWorkflowOperation[Any, Any]:
        return WithStartWorkflowOperation(
            "AutoReplyLedgerWorkflow",
            LedgerInput(account=account),
            id=ids.ledger_workflow_id(account),
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_queue=self._task_queue,
            static_summary=f"Automatic-reply limits of account {account}",
        )


class LedgerActivities:
    """The reservation as an activity of its own, as contacts begun before the reply
    activity reserved by itself still ask for it."""

    def __init__(self, ledger: ReplyLedger) -> None:
        self._ledger = ledger

    @activity.defn
    async def reserve_auto_reply(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        """Ask the ledger, starting it if it is not running."""
        return await self._ledger.reserve(request)

    @activity.defn
    async def suppress_addresses(self, request: SuppressRequest) -> int:
        """Addresses that bounced hard get no automatic reply for a while: the ledger knows."""
        return await self._ledger.suppress(request)

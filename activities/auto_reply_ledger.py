"""Reserving an automatic reply in the account's ledger (an update-with-start on Temporal)."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from ace_email import ids
from ace_email.models import LedgerInput, ReserveReplyRequest, ReserveReplyResult
from workflows.auto_reply_ledger import AutoReplyLedgerWorkflow


class LedgerActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    @activity.defn
    async def reserve_auto_reply(self, request: ReserveReplyRequest) -> ReserveReplyResult:
        """Ask the ledger, starting it if it is not running. Safe to retry: the ledger answers
        the same contact the same way."""
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

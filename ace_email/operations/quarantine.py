"""What an operator does with quarantined email: see what is there and why, and release one
into a contact.

A quarantined email's contact has ended with status `quarantined`; its message waits in the
account's quarantine folder. Releasing it starts a new run of the same contact (same id: one
email, one contact), which claims the message from there, is neither quarantined again by
analysis nor by rules, and records who released it and why it had been held.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.contact import ContactInput, ContactState, ContactStatus, QuarantineRelease
from ace_email.operations.common import Refused
from ace_email.temporal.calls import RPC_TIMEOUT

AT_ONCE = 16  # contacts read at the same time for a listing


async def quarantined(client: Client, account: str | None = None) -> list[dict[str, Any]]:
    """Every email in quarantine, newest first: the contact, why, where its message is."""
    query = f'WorkflowType="ContactWorkflow" AND {sa.STATUS.name}="{ContactStatus.QUARANTINED}"'
    if account:
        query += f' AND {sa.ACCOUNT.name}="{account}"'
    executions = [e async for e in client.list_workflows(query)]
    limit = asyncio.Semaphore(AT_ONCE)

    async def row(execution: WorkflowExecution) -> dict[str, Any] | None:
        async with limit:
            return await _row(client, execution)

    rows = [r for r in await asyncio.gather(*(row(e) for e in executions)) if r is not None]
    return sorted(rows, key=lambda r: r["quarantined_at"] or "", reverse=True)


async def _row(client: Client, execution: WorkflowExecution) -> dict[str, Any] | None:
    latest = await client.get_workflow_handle(execution.id).describe(rpc_timeout=RPC_TIMEOUT)
    if latest.run_id != execution.run_id:
        return None  # released since: a later run of the same contact
    handle = client.get_workflow_handle(
        execution.id, run_id=execution.run_id, result_type=ContactState
    )
    state: ContactState = await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    message = state.message
    return {
        "id": execution.id,
        "account": state.account,
        "reason": state.quarantine_reason or "",
        "from": state.sender,
        "subject": state.subject,
        "quarantined_at": execution.close_time.isoformat() if execution.close_time else None,
        "folder": message.folder if message else None,
        "uid": message.uid if message else None,
        "size": message.size if message else None,
    }


def describe(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "nothing in quarantine"
    return "\n".join(
        f"{r['id']}  {_when(r['quarantined_at'])}  {r['reason']}\n"
        f"    {r['from'] or '(no sender)'}: {r['subject'] or '(no subject)'}"
        f"  [{r['folder']} uid {r['uid']}, {r['size']} bytes]"
        for r in rows
    )


def _when(value: str | None) -> str:
    return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M:%S} UTC" if value else "-"


async def release(client: Client, settings: Settings, contact_id: str, by: str) -> str:
    """Start the quarantined email's contact again, released; Refused if it is not held."""
    handle = client.get_workflow_handle(contact_id, result_type=ContactState)
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Refused(f"no contact {contact_id!r}") from None
        raise
    status = description.typed_search_attributes.get(sa.STATUS) or "unknown"
    if description.status == WorkflowExecutionStatus.RUNNING or status != ContactStatus.QUARANTINED:
        raise Refused(f"contact {contact_id} is {status}; only a quarantined email can be released")
    state: ContactState = await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
    if state.message is None:
        raise Refused(f"contact {contact_id} names no message to release")
    try:
        account = settings.account(state.account)
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    policy = settings.policy(account)
    memo = await description.memo()
    released = QuarantineRelease(
        by=by, at=datetime.now(UTC), reason=state.quarantine_reason or "unknown"
    )
    try:
        await client.start_workflow(
            "ContactWorkflow",
            ContactInput(
                ref=state.message, policy=policy, arrived_at=state.received_at, released=released
            ),
            id=contact_id,
            task_queue=settings.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=dict(memo),
            static_summary=(
                f"From {state.sender or '(unknown sender)'}: {state.subject or '(no subject)'}"
                f" (released from quarantine by {by})"
            ),
            search_attributes=sa.new_contact(policy.name, policy.queue, state.message),
        )
    except WorkflowAlreadyStartedError:
        raise Refused(f"contact {contact_id} was released already") from None
    return (
        f"{contact_id}: released by {by} (it was: {released.reason}); it is a contact again, "
        f"see `starter.py status {contact_id}`"
    )

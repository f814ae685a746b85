"""Contacts as operators see them: listed newest first, one in detail, assigned to an agent
by hand, a mailbox polled now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.contact import AssignRequest, AssignResult, CommandResult, ContactState
from ace_email.operations import readable
from ace_email.operations.common import Refused, known_agent, newest_first, no_answer, why_not_open
from ace_email.temporal.calls import RPC_TIMEOUT


async def list_contacts(
    client: Client, status: str | None, limit: int, account: str | None = None
) -> list[dict[str, Any]]:
    query = 'WorkflowType="ContactWorkflow"'
    if status:
        query += f' AND {sa.STATUS.name}="{status}"'
    if account:
        query += f' AND {sa.ACCOUNT.name}="{account}"'
    rows: list[dict[str, Any]] = []
    for execution in await newest_first(client.list_workflows(query), limit):
        attributes = execution.typed_search_attributes
        memo = await _readable_memo(execution)
        rows.append(
            {
                "id": execution.id,
                "status": attributes.get(sa.STATUS),
                "account": attributes.get(sa.ACCOUNT),
                "from": memo.get("from", ""),
                "subject": memo.get("subject", ""),
                "queue": attributes.get(sa.QUEUE),
                "agent": attributes.get(sa.AGENT),
                "started": execution.start_time.isoformat() if execution.start_time else None,
                "channel": attributes.get(sa.CHANNEL) or "email",
            }
        )
    return rows


async def _readable_memo(execution: WorkflowExecution) -> Mapping[str, Any]:
    """The memo, or a placeholder where it is encrypted with a key this client lacks (or
    written by a codec it does not have): one such contact must not hide the others."""
    try:
        return await execution.memo()
    except (KeyError, ValueError):
        return {"from": "(encrypted)", "subject": "(encrypted)"}


async def assign(client: Client, settings: Settings, contact_id: str, agent_id: str) -> str:
    agent = known_agent(settings, agent_id)
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(contact_id)
    try:
        result = await handle.execute_update(
            "assign",
            AssignRequest(agent_id=agent.id, agent_name=agent.name, agent_email=agent.email),
            result_type=AssignResult,
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise Refused(no_answer(f"contact {contact_id}")) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise Refused(f"assignment refused: {reason}") from None
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            reason = await why_not_open(handle, contact_id)
            raise Refused(
                f"assignment refused: {reason}; only a queued contact can be assigned"
            ) from None
        raise
    where = f" ({agent.email})" if agent.email else " (built-in agent interface)"
    detail = f": {result.detail}" if result.detail else ""
    return f"{contact_id}: {result.status.value}, agent {agent.id}{where}{detail}"


async def poll_now(client: Client, settings: Settings, account_name: str) -> str:
    try:
        settings.account(account_name)
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    handle = client.get_workflow_handle(ids.mailbox_workflow_id(account_name))
    try:
        await handle.signal("poll_now", rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Refused(
                f"account {account_name!r} has no running poll loop; run `starter.py sync`"
            ) from None
        raise
    return f"{account_name}: poll requested"


def describe_contact(state: ContactState) -> str:
    fields = state.model_dump(by_alias=True, exclude={"message"})
    if state.message is not None:
        where = state.message
        fields["message"] = f"{where.folder} uid {where.uid}, {where.size} bytes"
    return readable.record(fields)


def describe_result(result: CommandResult) -> str:
    detail = f": {result.detail}" if result.detail else ""
    return f"{result.contact_id}: {result.status.value}{detail}"


def describe_row(row: dict[str, Any]) -> str:
    """One contact of `list` on one line."""
    return (
        f"{row['id']}  {row['status'] or '-':<11} {row['queue'] or '-':<10} "
        f"{row['agent'] or '-':<10} {row['from']}: {row['subject']}"
    )

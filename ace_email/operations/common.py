"""What the operators' commands share: the refusal they report, and talking to one contact."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.base import ConfigError
from ace_email.config.queues import AgentSettings
from ace_email.config.settings import Settings
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.contact import ContactState
from ace_email.temporal.calls import RPC_TIMEOUT


class Refused(Exception):
    """An operator's request that cannot be carried out; the message says why."""


def known_agent(settings: Settings, agent_id: str) -> AgentSettings:
    try:
        return settings.agent(agent_id)
    except ConfigError as exc:
        raise Refused(str(exc)) from None


def known_queue(settings: Settings, queue: str) -> str:
    names = settings.queue_names()
    if queue not in names:
        raise Refused(f"unknown queue {queue!r} (known: {', '.join(names) or 'none'})")
    return queue


async def contact_state(client: Client, contact_id: str) -> ContactState:
    handle = client.get_workflow_handle(contact_id)
    try:
        state: ContactState = await handle.query(
            "status", result_type=ContactState, rpc_timeout=RPC_TIMEOUT
        )
    except WorkflowQueryFailedError as err:
        raise Refused(f"contact {contact_id} does not answer: {err}") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Refused(f"no contact {contact_id!r}") from None
        raise
    return state


async def contact_update(
    client: Client, contact_id: str, update: str, arg: Any, result_type: type[Any]
) -> Any:
    """Send one update to a running contact; its refusal, or its absence, becomes Refused."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(contact_id)
    args = [] if arg is None else [arg]
    try:
        return await handle.execute_update(update, args=args, result_type=result_type)
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise Refused(no_answer(f"contact {contact_id}")) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise Refused(reason) from None
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise Refused(await why_not_open(handle, contact_id)) from None
        raise


def no_answer(what: str) -> str:
    return (
        f"{what} did not answer within {RPC_TIMEOUT.total_seconds():g} s (is a worker running?); "
        "the request may still be carried out: look again with `status`"
    )


async def why_not_open(handle: WorkflowHandle[Any, Any], contact_id: str) -> str:
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError:
        return f"no contact {contact_id!r}"
    status = description.typed_search_attributes.get(sa.STATUS) or "ended"
    return f"contact {contact_id} is {status} and has ended"


async def newest_first(
    executions: AsyncIterator[WorkflowExecution], limit: int
) -> list[WorkflowExecution]:
    """The `limit` workflows started last, each by its latest run, newest first.

    Visibility lists running executions first, then closed ones by close time, newest first.
    A workflow closes after it starts: once a closed one closed before the `limit`-th newest
    start seen so far, none listed after it can be newer, and the listing stops there.
    """
    latest: dict[str, WorkflowExecution] = {}
    bound: datetime | None = None
    async for execution in executions:
        closed = execution.close_time
        if closed is not None and len(latest) >= limit:
            if bound is None:
                bound = heapq.nlargest(limit, (e.start_time for e in latest.values()))[-1]
            if closed < bound:
                break
        known = latest.get(execution.id)
        if known is None or execution.start_time > known.start_time:
            latest[execution.id] = execution
            bound = None  # found again when next needed
    ordered = sorted(latest.values(), key=lambda e: e.start_time, reverse=True)
    return ordered[:limit]

"""Calls to workflows that more than one layer makes: the RPC timeout, asking a busy
workflow again, telling "not there" from other refusals, and starting an agent's workflow the
same way wherever that happens."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.queues import AgentSettings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.base import policy_digest

RPC_TIMEOUT = timedelta(seconds=10)
T = TypeVar("T")


def not_there(err: RPCError) -> bool:
    return err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


async def busy_retried(call: Callable[[], Awaitable[T]], patience: float = 8.0) -> T:
    """A call Temporal turns away because the workflow is busy (too many updates in flight,
    too many signals at once), or whose answer was cut short, is made again for a while with
    jittered pauses."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    pause = 0.1
    while True:
        try:
            return await call()
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            task = asyncio.current_task()
            if isinstance(err.__cause__, asyncio.CancelledError) or (
                task is not None and task.cancelling()
            ):  # our own cancellation, in the SDK's words: never asked again
                raise asyncio.CancelledError() from None
            if loop.time() > deadline:
                raise
        except RPCError as err:
            if err.status not in (RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE):
                raise
            if loop.time() > deadline:
                raise
        await asyncio.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 2, 2.0)


def agent_start_options(settings: Settings, agent: AgentSettings) -> dict[str, Any]:
    """How an agent's workflow is started, wherever that happens."""
    return {
        "static_summary": f"Agent {agent.id}" + (f" ({agent.name})" if agent.name else ""),
        "search_attributes": TypedSearchAttributes([SearchAttributePair(sa.AGENT, agent.id)]),
        "memo": {"policy": policy_digest(settings.agent_policy(agent))},
    }


def agent_start_operation(
    settings: Settings, agent: AgentSettings
) -> WithStartWorkflowOperation[Any, Any]:
    """Start the agent's workflow with an update if it is not running (update-with-start)."""
    return WithStartWorkflowOperation(
        "AgentWorkflow",
        settings.agent_input(agent),
        id=ids.agent_workflow_id(agent.id),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        task_queue=settings.temporal.task_queue,
        **agent_start_options(settings, agent),
    )

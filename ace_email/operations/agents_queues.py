"""The operators' routing commands: agents' presence, the queues, and moving contacts by hand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.queues import AgentSettings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.base import format_duration, policy_digest
from ace_email.contracts.contact import CommandResult, OfferAnswer, TransferRequest
from ace_email.contracts.queues import (
    AgentStatus,
    Presence,
    PresenceRequest,
    QueuePolicy,
    QueueStatus,
)
from ace_email.decisions.opening_hours import OpeningHours
from ace_email.operations.common import Refused, contact_update, known_agent, known_queue, no_answer
from ace_email.temporal.calls import RPC_TIMEOUT, agent_start_operation


async def set_presence(
    client: Client, settings: Settings, agent_id: str, presence: Presence
) -> AgentStatus:
    """Ready, not ready or offline; the agent's workflow starts with its first presence."""
    agent = known_agent(settings, agent_id)
    try:
        status: AgentStatus = await client.execute_update_with_start_workflow(
            "set_presence",
            PresenceRequest(presence=presence),
            start_workflow_operation=agent_start_operation(settings, agent),
            result_type=AgentStatus,
            rpc_timeout=RPC_TIMEOUT,
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise Refused(no_answer(f"agent {agent.id}")) from None
    return status


async def agents(client: Client, settings: Settings) -> list[dict[str, Any]]:
    """Each configured agent: presence, load and capacity, asked all at once."""
    return list(await asyncio.gather(*(_agent_row(client, settings, a) for a in settings.agents)))


async def agent_status(client: Client, settings: Settings, agent: AgentSettings) -> AgentStatus:
    """The agent's workflow's own account; an agent who never signed in is offline."""
    handle = client.get_workflow_handle(ids.agent_workflow_id(agent.id))
    try:
        status: AgentStatus = await handle.query(
            "status", result_type=AgentStatus, rpc_timeout=RPC_TIMEOUT
        )
    except WorkflowQueryFailedError as err:
        raise Refused(f"agent {agent.id} does not answer (is a worker running?): {err}") from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        policy = settings.agent_policy(agent)
        return AgentStatus(
            id=policy.id,
            name=policy.name,
            email=policy.email,
            capacity=policy.capacity,
            channel_capacity=policy.channel_capacity,
            skills=policy.skills,
            queues=policy.queues,
        )
    return status


async def _agent_row(client: Client, settings: Settings, agent: AgentSettings) -> dict[str, Any]:
    status = await agent_status(client, settings, agent)
    row = status.model_dump(mode="json", exclude={"held", "personal"})
    row["mode"] = "external" if status.email else "built-in"
    row["contacts"] = [h.contact_id for h in status.held]
    row["personal_waiting"] = [p.contact_id for p in status.personal]
    return row


async def queues(client: Client, settings: Settings) -> list[dict[str, Any]]:
    """Each queue: how many wait, the oldest wait, how many agents are ready."""
    names = settings.queue_names()
    return list(
        await asyncio.gather(*(_queue_row(client, q, settings.queue_policy(q)) for q in names))
    )


async def queue_status(client: Client, queue: str) -> QueueStatus:
    """The queue's own account; a queue nobody has waited in yet is empty."""
    handle = client.get_workflow_handle(ids.queue_workflow_id(queue))
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        if description.status != WorkflowExecutionStatus.RUNNING:
            return QueueStatus(queue=queue)
        status: QueueStatus = await handle.query(
            "status", result_type=QueueStatus, rpc_timeout=RPC_TIMEOUT
        )
    except WorkflowQueryFailedError as err:
        raise Refused(f"queue {queue} does not answer (is a worker running?): {err}") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return QueueStatus(queue=queue)
        raise
    return status


async def _queue_row(client: Client, queue: str, policy: QueuePolicy) -> dict[str, Any]:
    status = await queue_status(client, queue)
    now = datetime.now(UTC)
    if policy.hours is not None:  # the configured hours, whether or not the queue runs yet
        hours = OpeningHours.of_hours(policy.hours)
        status = status.model_copy(
            update={"open": hours.is_open(now), "next_change": hours.next_change(now)}
        )
    oldest = status.oldest_waiting_since
    row = status.model_dump(mode="json")
    row["oldest_wait_seconds"] = (
        round((datetime.now(UTC) - oldest).total_seconds(), 1) if oldest is not None else None
    )
    return row


async def transfer(
    client: Client,
    settings: Settings,
    contact_id: str,
    *,
    queue: str | None = None,
    agent_id: str | None = None,
) -> CommandResult:
    """To another queue, or to one agent's personal waiting list (for at most
    `routing.personal_wait_minutes`, then back to its queue)."""
    if (queue is None) == (agent_id is None):
        raise Refused("give --agent or --queue")
    request = TransferRequest(personal_wait_seconds=settings.routing.personal_wait_minutes * 60)
    if queue is not None:
        request = request.model_copy(update={"queue": known_queue(settings, queue)})
    else:
        agent = known_agent(settings, agent_id or "")
        request = request.model_copy(
            update={"agent_id": agent.id, "agent_name": agent.name, "agent_email": agent.email}
        )
    result: CommandResult = await contact_update(
        client, contact_id, "transfer", request, CommandResult
    )
    return result


async def contact_command(client: Client, contact_id: str, command: str) -> CommandResult:
    """`requeue` or `close_contact`."""
    result: CommandResult = await contact_update(client, contact_id, command, None, CommandResult)
    return result


async def answer_offer(
    client: Client, settings: Settings, contact_id: str, agent_id: str, *, accept: bool
) -> CommandResult:
    agent = known_agent(settings, agent_id)
    update = "accept_offer" if accept else "decline_offer"
    result: CommandResult = await contact_update(
        client, contact_id, update, OfferAnswer(agent_id=agent.id), CommandResult
    )
    return result


async def sync_routing(client: Client, settings: Settings) -> list[str]:
    """Running queues and agents on this task queue take the configuration's present
    policies. Compared by the digest in their memo, so no worker needs to answer and a second
    run sends nothing."""
    targets: list[tuple[str, str, BaseModel]] = [
        (f"queue {name}", ids.queue_workflow_id(name), settings.queue_policy(name))
        for name in settings.queue_names()
    ]
    targets += [
        (f"agent {a.id}", ids.agent_workflow_id(a.id), settings.agent_policy(a))
        for a in settings.agents
    ]
    lines: list[str] = []
    for label, workflow_id, policy in targets:
        handle = client.get_workflow_handle(workflow_id)
        try:
            description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        mine = description.task_queue == settings.temporal.task_queue
        if description.status != WorkflowExecutionStatus.RUNNING or not mine:
            continue
        if await description.memo_value("policy", default="") != policy_digest(policy):
            await handle.signal("reconfigure", policy, rpc_timeout=RPC_TIMEOUT)
            lines.append(f"{label}: reconfigured")
    return lines


def describe_agent(row: dict[str, Any]) -> str:
    where = row["email"] or "built-in interface"
    personal = len(row["personal_waiting"])
    return (
        f"{row['id']:<12} {row['presence']:<10} {row['load']} of {row['capacity']:<3} "
        f"{where}"
        + (f", {personal} waiting in person" if personal else "")
        + (f", skills {', '.join(row['skills'])}" if row["skills"] else "")
        + (f"\n{'':<12} ALARM: {row['alarm']}" if row.get("alarm") else "")
    )


def describe_queue(row: dict[str, Any]) -> str:
    wait = row["oldest_wait_seconds"]
    oldest = format_duration(timedelta(seconds=wait)) if wait is not None else "-"
    hours = ""
    if row.get("next_change"):
        change = "closes" if row["open"] else "opens"
        hours = f", {'open' if row['open'] else 'CLOSED'} ({change} {row['next_change']})"
    return (
        f"{row['queue']:<14} {row['waiting']} waiting, oldest {oldest}, "
        f"{row['agents_ready']} agent(s) ready ({row['agents_free']} with a free place), "
        f"{row['routed']} routed{hours}"
    )

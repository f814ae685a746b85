"""The account registry (`starter.py sync`): one poll loop per configured account, started,
reconfigured or stopped so that the running ones match the configuration; running queues and
agents given theirs. A second run changes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.base import policy_digest
from ace_email.contracts.mailbox import AccountPolicy, MailboxInput
from ace_email.operations import agents_queues as routing_commands
from ace_email.temporal.calls import RPC_TIMEOUT
from ace_email.temporal.client import ensure_search_attributes


async def sync(client: Client, settings: Settings) -> list[str]:
    """Make the running poll loops match the configuration; a second run changes nothing."""
    lines = [
        f"search attribute {name} registered"
        for name in await ensure_search_attributes(client, settings.temporal.namespace)
    ]
    configured = set()
    for account in settings.accounts:
        policy = settings.policy(account)
        workflow_id = ids.mailbox_workflow_id(account.name)
        configured.add(workflow_id)
        handle = client.get_workflow_handle(workflow_id)
        running_digest, polled_with = await _running_digest(handle)
        if running_digest is None:
            await client.start_workflow(
                "MailboxWorkflow",
                MailboxInput(policy=policy),
                id=workflow_id,
                task_queue=settings.temporal.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                memo={"policy": policy_digest(policy)},
                static_summary=f"Mailbox {account.name} <{account.address}>",
                search_attributes=_mailbox_attributes(policy),
            )
            lines.append(f"{account.name}: started {workflow_id}")
        elif running_digest != policy_digest(policy):
            await handle.signal("reconfigure", policy, rpc_timeout=RPC_TIMEOUT)
            lines.append(f"{account.name}: reconfigured")
        else:
            lines.append(f"{account.name}: unchanged")
        if changed := _endpoint_changes(polled_with, account.endpoints()):
            lines.append(
                f"{account.name}: {'; '.join(changed)}: workers read these at their start; "
                "restart them (worker.py) to use the change"
            )
    running = (
        'WorkflowType="MailboxWorkflow" AND ExecutionStatus="Running" '
        f'AND TaskQueue="{settings.temporal.task_queue}"'
    )
    async for execution in client.list_workflows(running):
        if execution.id not in configured:
            await client.get_workflow_handle(execution.id).signal("stop")
            lines.append(f"{execution.id}: no longer configured; stopping")
    return lines + await routing_commands.sync_routing(client, settings)


def _mailbox_attributes(policy: AccountPolicy) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [SearchAttributePair(sa.ACCOUNT, policy.name), SearchAttributePair(sa.QUEUE, policy.queue)]
    )


async def _running_digest(
    handle: WorkflowHandle[Any, Any],
) -> tuple[str | None, dict[str, str]]:
    """The running poll loop's policy digest (None: none runs), and the endpoints its
    workers last polled with."""
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None, {}
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None, {}
    digest = await description.memo_value("policy", default="")
    polled_with = await description.memo_value("connection", default={})
    return str(digest), dict(polled_with) if isinstance(polled_with, dict) else {}


def _endpoint_changes(polled_with: Mapping[str, str], configured: Mapping[str, str]) -> list[str]:
    """What the configuration says otherwise than the workers that polled last use."""
    return [
        f"{key} {polled_with[key]} -> {value}"
        for key, value in configured.items()
        if key in polled_with and polled_with[key] != value
    ]

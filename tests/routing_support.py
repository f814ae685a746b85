"""Helpers for the routing tests: a worker for one test's queues and agents, work items,
presence, and waiting for a contact to reach a state.

Queue and agent workflows are named after the queue and the agent, and every test shares
one Temporal server: each test names its own (with a tag), so no test routes another's.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client

from ace_email.config.settings import Settings
from ace_email.contracts.contact import CommandResult
from ace_email.contracts.queues import AgentStatus, Presence, QueueStatus
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.agents_queues import (
    agent_status,
    answer_offer,
    contact_command,
    queue_status,
    set_presence,
)
from ace_email.operations.workitems import create_work_item, parse_request
from tests.conftest import Pipeline
from tests.support import MailStack, account_settings, eventually, wait_status
from worker import ACTIVITY_THREADS, build_worker

ALL_CHANNELS = ["email", "workitem", "social"]


def new_tag() -> str:
    return uuid.uuid4().hex[:6]


def routed_settings(
    mail: MailStack,
    temporal_address: str,
    tag: str,
    *,
    queues: Sequence[dict[str, Any]],
    agents: Sequence[dict[str, Any]],
    routing: dict[str, Any] | None = None,
    account_extra: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Settings:
    """One account whose default queue is the first of `queues`; short offers by default."""
    return account_settings(
        name=f"support-{tag}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-{tag}",
        extra={
            "queues": [{"channels": ALL_CHANNELS} | dict(q) for q in queues],
            "routing": {"offer_timeout_seconds": 30, "personal_wait_minutes": 1} | (routing or {}),
        }
        | (extra or {}),
        account_extra={"queue": queues[0]["name"]} | (account_extra or {}),
        agents=list(agents),
    )


@asynccontextmanager
async def routing_worker(
    client: Client, mail: MailStack, settings: Settings
) -> AsyncIterator[Pipeline]:
    pool = ImapPool(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, settings, pool, executor):
            yield Pipeline(settings=settings, client=client, mail=mail)
        pool.close_all()


async def work_item(
    pipeline: Pipeline,
    subject: str,
    *,
    queue: str | None = None,
    priority: int = 0,
    skills: Sequence[str] = (),
    channel: str = "workitem",
    reply_to: str | None = None,
    external_id: str | None = None,
    body: str = "Please look into this.",
) -> str:
    request = parse_request(
        {
            "queue": queue or pipeline.settings.accounts[0].queue,
            "subject": subject,
            "body": body,
            "priority": priority,
            "skills": list(skills),
            "channel": channel,
            "reply_to": reply_to,
            "external_id": external_id,
        }
    )
    pool = ImapPool(pipeline.settings)
    try:
        created = await create_work_item(pipeline.client, pipeline.settings, pool, request)
    finally:
        pool.close_all()
    return created.contact_id


async def ready(pipeline: Pipeline, agent_id: str, presence: Presence = Presence.READY) -> None:
    await set_presence(pipeline.client, pipeline.settings, agent_id, presence)


reach = wait_status


async def queued_in(client: Client, queue: str, count: int, timeout: float = 30.0) -> QueueStatus:
    """The queue once `count` contacts wait in it."""

    async def check() -> QueueStatus:
        status = await queue_status(client, queue)
        assert status.waiting == count, f"{queue}: {status.waiting} waiting, not {count}"
        return status

    return await eventually(check, timeout=timeout)


async def accept(pipeline: Pipeline, contact_id: str, agent_id: str) -> CommandResult:
    return await answer_offer(pipeline.client, pipeline.settings, contact_id, agent_id, accept=True)


async def close(pipeline: Pipeline, contact_id: str) -> CommandResult:
    return await contact_command(pipeline.client, contact_id, "close_contact")


async def agent(pipeline: Pipeline, agent_id: str) -> AgentStatus:
    return await agent_status(pipeline.client, pipeline.settings, pipeline.settings.agent(agent_id))

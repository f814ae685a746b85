"""Routing activities: what contacts, queues and agents ask of one another that a workflow
cannot do itself.

Workflows signal one another directly (a withdrawal, a freed place, an agent's news); these
activities start a workflow that may not run yet (signal-with-start), ask a question or wait
for an update's answer, through the client. Each is safe to retry: a queue ignores a contact
it already holds in that round, an agent grants again a place it already gave that contact,
and a contact accepts again the agent it already accepted.

Workflows are named by their type here, not imported, so that the workflows can import these
activities.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.base import ConfigError
from ace_email.config.queues import AgentSettings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.base import Model, policy_digest
from ace_email.contracts.contact import OverflowNotice, RouteAnswer, RouteRequest
from ace_email.contracts.queues import (
    AgentView,
    DispatchBatch,
    DispatchOutcome,
    DispatchResult,
    HeldCheck,
    PersonalWait,
    QueueInput,
    Release,
    Reservation,
    ReservationAnswer,
    RouteOrder,
    Waiting,
    WaitingBatch,
)
from ace_email.temporal.calls import (
    RPC_TIMEOUT,
    agent_start_options,
    busy_retried,
    not_there,
)
from activities.batching import Coalescer

CONCURRENT_CALLS = 16
# A queue too busy to take a signal now ("Workflow is busy") is asked again, for this long.
BUSY_PATIENCE = 15.0


class EnqueueRequest(Model):
    queue: str
    entry: Waiting


class AgentViewsRequest(Model):
    queue: str


class OverflowBatch(Model):
    notices: list[OverflowNotice]


class HoldRequest(Model):
    agent_id: str
    reservation: Reservation


class PersonalWaitRequest(Model):
    agent_id: str
    wait: PersonalWait


class RoutingActivities:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._enqueuers: dict[str, Coalescer[Waiting]] = {}

    @property
    def _task_queue(self) -> str:
        return self._settings.temporal.task_queue

    @activity.defn
    async def enqueue(self, request: EnqueueRequest) -> None:
        """Into the queue's waiting list; the queue's workflow starts if it is not running.
        Contacts enqueuing at once from this worker go in one signal."""
        coalescer = self._enqueuers.get(request.queue)
        if coalescer is None:
            coalescer = self._enqueuers[request.queue] = Coalescer(
                lambda entries: self._enqueue_many(request.queue, entries)
            )
        await coalescer.add(request.entry)

    async def _enqueue_many(self, queue: str, entries: list[Waiting]) -> None:
        policy = self._settings.queue_policy(queue)
        await busy_retried(
            lambda: self._client.start_workflow(
                "QueueWorkflow",
                QueueInput(policy=policy),
                id=ids.queue_workflow_id(queue),
                task_queue=self._task_queue,
                start_signal="enqueue_many",
                start_signal_args=[WaitingBatch(entries=entries)],
                static_summary=f"Queue {queue}",
                memo={"policy": policy_digest(policy)},
                search_attributes=TypedSearchAttributes([SearchAttributePair(sa.QUEUE, queue)]),
                rpc_timeout=RPC_TIMEOUT,
            ),
            patience=BUSY_PATIENCE,
        )

    @activity.defn
    async def dispatch(self, batch: DispatchBatch) -> list[DispatchResult]:
        """Carry out routing decisions: reserve each agent's place, then hand the contact to
        the agent. A contact that has moved on meanwhile frees the place again."""
        turns = asyncio.Semaphore(CONCURRENT_CALLS)

        async def one(order: RouteOrder) -> DispatchResult:
            async with turns:
                return await self._dispatch(batch.source, order)

        return list(await asyncio.gather(*(one(order) for order in batch.orders)))

    async def _dispatch(self, source: str, order: RouteOrder) -> DispatchResult:
        try:
            agent = self._settings.agent(order.agent_id)
        except ConfigError as exc:
            return DispatchResult(
                contact_id=order.contact_id,
                agent_id=order.agent_id,
                outcome=DispatchOutcome.AGENT_BUSY,
                detail=str(exc),
            )
        view: AgentView | None = None
        if order.reserve:
            answer = await self._reserve(order)
            if answer is None or not answer.granted:
                return DispatchResult(
                    contact_id=order.contact_id,
                    agent_id=order.agent_id,
                    outcome=DispatchOutcome.AGENT_BUSY,
                    view=answer.view if answer else None,
                    detail=answer.reason if answer else "the agent is not signed in",
                )
            view = answer.view
        route = RouteRequest(
            agent_id=agent.id,
            agent_name=agent.name,
            agent_email=agent.email,
            round=order.round,
            source=f"queue {source}" if order.reserve else "personal waiting list",
            sequence=order.sequence if order.reserve else None,
            offer_timeout_seconds=self._settings.routing.offer_timeout_seconds,
        )
        accepted = await self._hand_over(order.contact_id, route)
        if accepted.accepted:
            return DispatchResult(
                contact_id=order.contact_id,
                agent_id=order.agent_id,
                outcome=DispatchOutcome.ROUTED,
                view=view,
            )
        if order.reserve:
            await self._signal(
                ids.agent_workflow_id(order.agent_id),
                "release",
                Release(contact_id=order.contact_id),
            )
        return DispatchResult(
            contact_id=order.contact_id,
            agent_id=order.agent_id,
            outcome=DispatchOutcome.STALE,
            detail=accepted.reason,
        )

    async def _reserve(self, order: RouteOrder) -> ReservationAnswer | None:
        """The agent's answer; None where it has no running workflow (signed out long ago)."""
        handle = self._client.get_workflow_handle(ids.agent_workflow_id(order.agent_id))
        reservation = Reservation(
            contact_id=order.contact_id,
            channel=order.channel,
            queue=order.queue,
            skills=order.skills,
        )
        try:
            return await busy_retried(
                lambda: handle.execute_update(
                    "reserve", reservation, result_type=ReservationAnswer, rpc_timeout=RPC_TIMEOUT
                )
            )
        except WorkflowUpdateFailedError:
            return None
        except RPCError as err:
            if not_there(err):
                return None
            raise

    async def _hand_over(self, contact_id: str, route: RouteRequest) -> RouteAnswer:
        handle = self._client.get_workflow_handle(contact_id)
        try:
            return await busy_retried(
                lambda: handle.execute_update(
                    "route", route, result_type=RouteAnswer, rpc_timeout=RPC_TIMEOUT
                )
            )
        except WorkflowUpdateFailedError as err:
            return RouteAnswer(accepted=False, reason=str(err.cause or err))
        except RPCError as err:
            if not_there(err):
                return RouteAnswer(accepted=False, reason="the contact has ended")
            raise

    @activity.defn
    async def agent_views(self, request: AgentViewsRequest) -> list[AgentView]:
        """What a starting queue needs to know of the agents who serve it."""
        views = await asyncio.gather(
            *(self._view(agent) for agent in self._settings.agents_serving(request.queue))
        )
        return [v for v in views if v is not None]

    async def _view(self, agent: AgentSettings) -> AgentView | None:
        handle = self._client.get_workflow_handle(ids.agent_workflow_id(agent.id))
        try:
            view: AgentView = await handle.query(
                "view", result_type=AgentView, rpc_timeout=RPC_TIMEOUT
            )
            return view
        except WorkflowQueryFailedError:
            return None
        except RPCError as err:
            if not_there(err):
                return None
            raise

    @activity.defn
    async def hold(self, request: HoldRequest) -> None:
        """An operator's direct assignment takes a place with the agent, signed in or not."""
        await self._agent_signal_with_start(request.agent_id, "take", request.reservation)

    @activity.defn
    async def wait_for_agent(self, request: PersonalWaitRequest) -> None:
        """Into the agent's personal waiting list."""
        await self._agent_signal_with_start(request.agent_id, "wait_personal", request.wait)

    @activity.defn
    async def tell_overflow(self, batch: OverflowBatch) -> None:
        await asyncio.gather(
            *(self._signal(n.contact_id, "overflow", n) for n in batch.notices),
        )

    @activity.defn
    async def held_elsewhere(self, check: HeldCheck) -> list[str]:
        """Of the contacts an agent holds, those no longer with it: ended, or with another
        agent (an operator terminated one in the Web UI, say)."""
        gone: list[str] = []
        for contact_id in check.contact_ids:
            try:
                described = await self._client.get_workflow_handle(contact_id).describe(
                    rpc_timeout=RPC_TIMEOUT
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                gone.append(contact_id)
                continue
            agent = described.typed_search_attributes.get(sa.AGENT)
            running = described.status == WorkflowExecutionStatus.RUNNING
            if not running or agent != check.agent_id:
                gone.append(contact_id)
        return gone

    async def _agent_signal_with_start(self, agent_id: str, signal: str, arg: Any) -> None:
        agent = self._settings.agent(agent_id)
        await self._client.start_workflow(
            "AgentWorkflow",
            self._settings.agent_input(agent),
            id=ids.agent_workflow_id(agent_id),
            task_queue=self._task_queue,
            start_signal=signal,
            start_signal_args=[arg],
            **agent_start_options(self._settings, agent),
            rpc_timeout=RPC_TIMEOUT,
        )

    async def _signal(self, workflow_id: str, signal: str, arg: Any) -> None:
        try:
            await self._client.get_workflow_handle(workflow_id).signal(
                signal, arg, rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as err:
            if not not_there(err):
                raise

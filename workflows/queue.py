"""QueueWorkflow: one per queue, `queue-<name>`. It holds the queue's waiting contacts and
decides which ready agent takes which: priority, then age; the longest-idle agent who can.

Contacts enter by the `enqueue` signal and leave by `withdraw` (or by being routed); agents
tell it their presence and free places by `agent_update`. Its decisions go out in batches
(one activity reserves the agents' places and hands the contacts over), so a busy queue
costs a few history events per batch, not per contact. Overflow is the queue's to decide;
escalation is computed from each contact's time in the queue. The state travels through
continue-as-new.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts.base import policy_digest
    from ace_email.contracts.contact import OverflowNotice
    from ace_email.contracts.queues import (
        AgentView,
        DispatchBatch,
        DispatchOutcome,
        Hours,
        QueuedContact,
        QueueInput,
        QueuePolicy,
        QueueStatus,
        RouteOrder,
        Waiting,
        WaitingBatch,
        Withdrawal,
        pack_waiting,
        unpack_waiting,
    )
    from ace_email.decisions import matching
    from ace_email.decisions.opening_hours import OpeningHours
    from activities.routing import AgentViewsRequest, OverflowBatch, RoutingActivities
    from workflows import activity_options

HEAD_SHOWN = 20
# Opening hours: a closed queue offers nothing, and waiting counts (for escalation and
# overflow) from its opening.
OPENING_HOURS_PATCH = "opening-hours"
MAX_BATCHES_IN_FLIGHT = 4


@workflow.defn
class QueueWorkflow:
    @workflow.init
    def __init__(self, queue: QueueInput) -> None:
        self._policy: QueuePolicy = queue.policy
        waiting = [*queue.waiting, *unpack_waiting(queue.waiting_packed)]
        self._waiting: dict[str, Waiting] = {w.contact_id: w for w in waiting}
        self._agents: dict[str, AgentView] = {a.agent_id: a for a in queue.agents}
        self._agents_known = queue.agents_known
        self._routed = queue.routed
        self._decided = queue.decided
        self._overflowed = queue.overflowed
        self._changed = True
        self._in_flight: dict[str, Waiting] = {}
        self._withdrawn_in_flight: dict[str, int] = {}
        self._batches = 0
        self._events_per_run = queue.events_per_run
        self._hours: tuple[Hours, OpeningHours] | None = None
        self._was_open: bool | None = None
        self._hours_patched = False

    @workflow.run
    async def run(self, queue: QueueInput) -> None:
        if not self._agents_known:
            views = await workflow.execute_activity_method(
                RoutingActivities.agent_views,
                AgentViewsRequest(queue=self._policy.name),
                start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
                retry_policy=activity_options.ROUTING_RETRY,
                summary="ask the agents who serve this queue",
            )
            for view in views:
                self._take_view(view)
            self._agents_known = True
        while True:
            self._changed = False
            now = workflow.now()
            is_open = self._open_now(now)
            if is_open:
                await self._overflow()
                await self._route()
            self._show()
            if self._time_to_continue():
                await workflow.wait_condition(lambda: not self._batches)
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carried())
            with suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._changed, timeout=self._next_wake(workflow.now(), is_open)
                )

    def _opening_hours(self, *, in_query: bool = False) -> OpeningHours | None:
        """The queue's hours, where it has any (a query only reads what the loop decided)."""
        hours = self._policy.hours
        if hours is None:
            return None
        if in_query:
            if not self._hours_patched:
                return None
        elif not (self._hours_patched or workflow.patched(OPENING_HOURS_PATCH)):
            return None
        self._hours_patched = True
        if self._hours is None or self._hours[0] != hours:
            self._hours = (hours, OpeningHours.of_hours(hours))
        return self._hours[1]

    def _open_now(self, now: datetime) -> bool:
        """Whether the queue is open; at its opening, those waiting count as having entered
        then (escalation and overflow count from the opening, not through the night)."""
        hours = self._opening_hours()
        is_open = hours is None or hours.is_open(now)
        if is_open and self._was_open is False:
            self._waiting = {
                contact_id: entry.model_copy(update={"entered_at": max(entry.entered_at, now)})
                for contact_id, entry in self._waiting.items()
            }
        self._was_open = is_open
        return is_open

    def _next_wake(self, now: datetime, is_open: bool) -> timedelta | None:
        """Until the next overflow is due (while open) or the queue opens or closes."""
        waits = [self._next_overflow(now)] if is_open else []
        hours = self._opening_hours()
        change = hours.next_change(now) if hours is not None else None
        if change is not None:
            waits.append(max(change - now, timedelta(seconds=1)))
        known = [w for w in waits if w is not None]
        return min(known) if known else None

    def _time_to_continue(self) -> bool:
        info = workflow.info()
        limit = self._events_per_run
        return info.is_continue_as_new_suggested() or (
            limit > 0 and info.get_current_history_length() >= limit
        )

    @workflow.signal
    def enqueue(self, entry: Waiting) -> None:
        """A contact waits here from now on (again, after a refused offer: in its old place)."""
        current = self._waiting.get(entry.contact_id) or self._in_flight.get(entry.contact_id)
        if current is not None and current.round >= entry.round:
            return
        self._waiting[entry.contact_id] = entry
        self._changed = True

    @workflow.signal
    def enqueue_many(self, batch: WaitingBatch) -> None:
        """Contacts that came in together, from one worker."""
        for entry in batch.entries:
            self.enqueue(entry)

    @workflow.signal
    def withdraw(self, withdrawal: Withdrawal) -> None:
        """A contact left (assigned by hand, transferred, closed)."""
        current = self._waiting.get(withdrawal.contact_id)
        if current is not None and current.round <= withdrawal.round:
            del self._waiting[withdrawal.contact_id]
            self._changed = True
        if withdrawal.contact_id in self._in_flight:
            self._withdrawn_in_flight[withdrawal.contact_id] = withdrawal.round

    @workflow.signal
    def agent_update(self, view: AgentView) -> None:
        self._take_view(view)
        self._changed = True

    @workflow.signal
    def reconfigure(self, policy: QueuePolicy) -> None:
        if policy.name == self._policy.name and policy != self._policy:
            self._policy = policy
            workflow.upsert_memo({"policy": policy_digest(policy)})
            self._changed = True

    @workflow.query
    def policy(self) -> QueuePolicy:
        return self._policy

    @workflow.query
    def status(self) -> QueueStatus:
        return self._status(workflow.now())

    def _take_view(self, view: AgentView) -> None:
        known = self._agents.get(view.agent_id)
        if known is not None and known.seq > view.seq:
            return
        if self._policy.name in view.queues:
            self._agents[view.agent_id] = view
        else:
            self._agents.pop(view.agent_id, None)

    async def _route(self) -> None:
        """Decide what the ready agents take now and send it off. Batches go out without
        waiting for the one before: while one waits for its agents' and contacts' answers,
        agents freed meanwhile are given work too."""
        if self._batches >= MAX_BATCHES_IN_FLIGHT:
            return
        now = workflow.now()
        decisions = matching.match(self._waiting.values(), self._agents.values(), self._policy, now)
        if not decisions:
            return
        orders: list[RouteOrder] = []
        for entry, agent in decisions:
            del self._waiting[entry.contact_id]
            self._in_flight[entry.contact_id] = entry
            self._agents[agent.agent_id] = agent
            self._decided += 1
            orders.append(
                RouteOrder(
                    contact_id=entry.contact_id,
                    agent_id=agent.agent_id,
                    round=entry.round,
                    channel=entry.channel,
                    skills=entry.skills,
                    queue=self._policy.name,
                    sequence=self._decided,
                )
            )
        self._batches += 1
        asyncio.create_task(self._dispatch(orders))  # noqa: RUF006 - counted in _batches

    async def _dispatch(self, orders: list[RouteOrder]) -> None:
        try:
            results = await workflow.execute_activity_method(
                RoutingActivities.dispatch,
                DispatchBatch(source=self._policy.name, orders=orders),
                start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
                retry_policy=activity_options.ROUTING_RETRY,
                summary=f"route {len(orders)} contact(s)",
            )
        finally:
            self._batches -= 1
            self._changed = True
        for result in results:
            entry = self._in_flight.pop(result.contact_id)
            withdrawn = self._withdrawn_in_flight.pop(result.contact_id, None)
            if result.view is not None:
                self._take_view(result.view)
            if result.outcome is DispatchOutcome.ROUTED:
                self._routed += 1
            elif result.outcome is DispatchOutcome.AGENT_BUSY:
                if result.view is None:
                    self._agents.pop(result.agent_id, None)
                back = withdrawn is None or withdrawn < entry.round
                if back and result.contact_id not in self._waiting:
                    self._waiting[result.contact_id] = entry

    async def _overflow(self) -> None:
        now = workflow.now()
        to_queue = self._policy.overflow_to
        due = [e for e in self._waiting.values() if matching.overflow_due(e, self._policy, now)]
        if not due or to_queue is None:
            return
        for entry in due:
            del self._waiting[entry.contact_id]
        self._overflowed += len(due)
        await workflow.execute_activity_method(
            RoutingActivities.tell_overflow,
            OverflowBatch(
                notices=[
                    OverflowNotice(
                        contact_id=e.contact_id,
                        round=e.round,
                        from_queue=self._policy.name,
                        to_queue=to_queue,
                    )
                    for e in due
                ]
            ),
            start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
            retry_policy=activity_options.ROUTING_RETRY,
            summary=f"overflow {len(due)} contact(s) to {to_queue}",
        )

    def _next_overflow(self, now: datetime) -> timedelta | None:
        after = self._policy.overflow_after_seconds
        if not after or not self._policy.overflow_to or not self._waiting:
            return None
        first = min(e.entered_at for e in self._waiting.values()) + timedelta(seconds=after)
        return max(first - now, timedelta(seconds=1))

    def _carried(self) -> QueueInput:
        return QueueInput(
            policy=self._policy,
            waiting_packed=pack_waiting(list(self._waiting.values())),
            agents=list(self._agents.values()),
            agents_known=True,
            routed=self._routed,
            decided=self._decided,
            overflowed=self._overflowed,
            events_per_run=self._events_per_run,
        )

    def _status(self, now: datetime, head: int = HEAD_SHOWN) -> QueueStatus:
        order = matching.queue_order(self._waiting.values(), self._policy, now) if head else []
        ready = [a for a in self._agents.values() if a.ready]
        hours = self._opening_hours(in_query=True)
        return QueueStatus(
            queue=self._policy.name,
            open=hours is None or hours.is_open(now),
            next_change=hours.next_change(now) if hours is not None else None,
            waiting=len(self._waiting),
            oldest_waiting_since=min(
                (e.waiting_since for e in self._waiting.values()), default=None
            ),
            routed=self._routed,
            overflowed=self._overflowed,
            agents_ready=len(ready),
            agents_free=sum(1 for a in ready if a.free > 0),
            head=[
                QueuedContact(
                    contact_id=e.contact_id,
                    priority=e.priority,
                    effective_priority=matching.effective_priority(e, self._policy, now),
                    waiting_since=e.waiting_since,
                    entered_at=e.entered_at,
                    skills=e.skills,
                    channel=e.channel,
                )
                for e in order[:head]
            ],
        )

    def _show(self) -> None:
        status = self._status(workflow.now(), head=0)
        oldest = (
            f" · oldest waiting since {status.oldest_waiting_since:%Y-%m-%d %H:%M:%S} UTC"
            if status.oldest_waiting_since
            else ""
        )
        hours = ""
        if status.next_change is not None:
            state = "open" if status.open else "closed"
            change = "closes" if status.open else "opens"
            hours = f" · {state}, {change} {status.next_change:%Y-%m-%d %H:%M} UTC"
        workflow.set_current_details(
            f"**{status.waiting} waiting**{hours}{oldest} · {status.routed} routed · "
            f"{status.overflowed} overflowed · agents ready {status.agents_ready} "
            f"({status.agents_free} with a free place)"
        )

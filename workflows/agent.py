"""AgentWorkflow: one per agent, `agent-<id>`. The one place that knows an agent's presence,
the contacts it holds and its personal waiting list, so its capacity is never exceeded however
many queues route to it at once.

Queues reserve a place through the `reserve` update, which answers at once and in order;
contacts give it back with `release` when they close or move on. An operator's direct
assignment takes a place whatever the presence and load (`take`). Contacts routed to this
agent in person wait in its personal list and are taken before any queue's. The queues it
serves hear of every change that could give them work: presence, a place freed, new skills.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import ids
    from ace_email.contracts import search_attributes as sa
    from ace_email.contracts.base import Channel, policy_digest
    from ace_email.contracts.queues import (
        AgentInput,
        AgentPolicy,
        AgentStatus,
        AgentView,
        DispatchBatch,
        DispatchOutcome,
        Held,
        HeldCheck,
        MailAlarm,
        PersonalWait,
        Presence,
        PresenceRequest,
        Release,
        Reservation,
        ReservationAnswer,
        RouteOrder,
        Withdrawal,
    )
    from ace_email.decisions import matching
    from activities.routing import RoutingActivities
    from workflows import activity_options
    from workflows.messaging import signal_if_running

# A place reserved moments ago may not show on its contact yet: only older ones are checked.
RECONCILE_GRACE = timedelta(minutes=2)


@workflow.defn
class AgentWorkflow:
    @workflow.init
    def __init__(self, agent: AgentInput) -> None:
        self._policy: AgentPolicy = agent.policy
        self._presence = agent.presence
        self._presence_since = agent.presence_since
        self._idle_since = agent.idle_since
        self._alarm = agent.alarm
        self._held: dict[str, Held] = {h.contact_id: h for h in agent.held}
        self._personal: list[PersonalWait] = list(agent.personal)
        self._seq = agent.seq
        self._max_load = agent.max_load
        self._taken = agent.contacts_taken
        self._told_queues: set[str] = set(agent.policy.queues)
        self._tell = False
        self._changed = True
        self._published_presence: Presence | None = None
        self._reconcile_every = timedelta(seconds=agent.reconcile_every_seconds)

    @workflow.run
    async def run(self, agent: AgentInput) -> None:
        reconcile_at = workflow.now() + self._reconcile_every
        while True:
            self._changed = False
            self._drop_expired_waits()
            self._publish()
            await self._serve_personal()
            await self._tell_queues()
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carried())
            if self._held and workflow.now() >= reconcile_at:
                await self._reconcile()
                reconcile_at = workflow.now() + self._reconcile_every
                continue
            wake = [reconcile_at] if self._held else []
            wake += [p.until for p in self._personal]
            timeout = max(min(wake) - workflow.now(), timedelta(seconds=1)) if wake else None
            with suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._changed, timeout=timeout)

    @workflow.update
    def set_presence(self, request: PresenceRequest) -> AgentStatus:
        if request.presence is not self._presence:
            now = workflow.now()
            self._presence = request.presence
            self._presence_since = now
            if request.presence is Presence.READY:
                self._idle_since = now
            self._changed_view()
        if request.presence is Presence.READY:
            self._alarm = None
        return self.status()

    @workflow.signal
    def mail_bounced(self, alarm: MailAlarm) -> None:
        """Mail delivered to the agent's own address bounced: the agent cannot get contacts
        by mail, so they are set not-ready (an operator alarm) until they are ready again."""
        self._alarm = (
            f"mail to {alarm.address} bounced ({alarm.detail}; contact {alarm.contact_id}); "
            "set not-ready until the address works"
        )
        if self._presence is not Presence.NOT_READY:
            self._presence = Presence.NOT_READY
            self._presence_since = workflow.now()
        self._changed_view()

    @workflow.update
    def reserve(self, reservation: Reservation) -> ReservationAnswer:
        """A queue asks for a place for one contact; granted again to a contact that has it."""
        if reservation.contact_id not in self._held:
            refusal = self._refusal(reservation)
            if refusal:
                return ReservationAnswer(granted=False, reason=refusal, view=self.view())
            self._hold(reservation)
        return ReservationAnswer(granted=True, view=self.view())

    @workflow.signal
    def take(self, reservation: Reservation) -> None:
        """An operator assigned a contact to this agent directly."""
        if reservation.contact_id not in self._held:
            self._hold(reservation.model_copy(update={"force": True}))

    @workflow.signal
    def release(self, release: Release) -> None:
        if self._held.pop(release.contact_id, None) is not None:
            self._changed_view()

    @workflow.signal
    def wait_personal(self, wait: PersonalWait) -> None:
        self._personal = [p for p in self._personal if p.contact_id != wait.contact_id]
        self._personal.append(wait)
        self._changed_view()

    @workflow.signal
    def withdraw_personal(self, withdrawal: Withdrawal) -> None:
        before = len(self._personal)
        self._personal = [
            p
            for p in self._personal
            if not (p.contact_id == withdrawal.contact_id and p.round <= withdrawal.round)
        ]
        if len(self._personal) != before:
            self._changed_view()

    @workflow.signal
    def reconfigure(self, policy: AgentPolicy) -> None:
        if policy.id == self._policy.id and policy != self._policy:
            self._policy = policy
            workflow.upsert_memo({"policy": policy_digest(policy)})
            self._changed_view()

    @workflow.query
    def policy(self) -> AgentPolicy:
        return self._policy

    @workflow.query
    def view(self) -> AgentView:
        free, by_channel = self._free_for_queues()
        return AgentView(
            agent_id=self._policy.id,
            seq=self._seq,
            ready=self._presence is Presence.READY,
            free=free,
            free_by_channel=by_channel,
            skills=self._policy.skills,
            queues=self._policy.queues,
            idle_since=self._idle_since,
        )

    @workflow.query
    def status(self) -> AgentStatus:
        held = list(self._held.values())
        return AgentStatus(
            id=self._policy.id,
            name=self._policy.name,
            email=self._policy.email,
            presence=self._presence,
            presence_since=self._presence_since,
            idle_since=self._idle_since,
            capacity=self._policy.capacity,
            channel_capacity=self._policy.channel_capacity,
            load=len(held),
            load_by_channel=matching.load_by_channel(held),
            max_load=self._max_load,
            contacts_taken=self._taken,
            skills=self._policy.skills,
            queues=self._policy.queues,
            held=held,
            personal=self._personal,
            alarm=self._alarm,
        )

    def _refusal(self, reservation: Reservation) -> str | None:
        if self._presence is not Presence.READY:
            return f"agent {self._policy.id} is {self._presence.value}"
        if reservation.queue not in self._policy.queues:
            return f"agent {self._policy.id} does not serve queue {reservation.queue}"
        missing = set(reservation.skills) - set(self._policy.skills)
        if missing:
            return f"agent {self._policy.id} lacks skills {sorted(missing)}"
        free, by_channel = self._free_for_queues()
        if not matching.has_place(free, by_channel, reservation.channel):
            return f"agent {self._policy.id} has no free place for {reservation.channel.value}"
        return None

    def _free_for_queues(self) -> tuple[int, dict[Channel, int]]:
        """Places a queue may take: the personal waiting list comes first."""
        free, by_channel = matching.free_places(self._policy, list(self._held.values()))
        now = workflow.now()
        waiting = sum(1 for p in self._personal if p.until > now)
        return max(free - waiting, 0), by_channel

    def _drop_expired_waits(self) -> None:
        """A contact whose personal wait ran out goes back to its queue by itself."""
        now = workflow.now()
        kept = [p for p in self._personal if p.until > now]
        if len(kept) != len(self._personal):
            self._personal = kept
            self._changed_view()

    def _hold(self, reservation: Reservation) -> None:
        now = workflow.now()
        self._held[reservation.contact_id] = Held(
            contact_id=reservation.contact_id,
            channel=reservation.channel,
            queue=reservation.queue,
            since=now,
            forced=reservation.force,
        )
        self._idle_since = now
        self._taken += 1
        self._seq += 1
        self._max_load = max(self._max_load, len(self._held))
        self._changed = True

    def _changed_view(self) -> None:
        """Something that could give a queue work: tell the queues."""
        self._seq += 1
        self._tell = True
        self._changed = True

    async def _serve_personal(self) -> None:
        """Contacts waiting for this agent in person, oldest first, as places allow."""
        if self._presence is not Presence.READY or not self._personal:
            return
        orders: list[RouteOrder] = []
        for wait in list(self._personal):
            free, by_channel = matching.free_places(self._policy, list(self._held.values()))
            if not matching.has_place(free, by_channel, wait.channel):
                continue
            self._personal.remove(wait)
            self._hold(
                Reservation(contact_id=wait.contact_id, channel=wait.channel, queue=wait.queue)
            )
            orders.append(
                RouteOrder(
                    contact_id=wait.contact_id,
                    agent_id=self._policy.id,
                    round=wait.round,
                    channel=wait.channel,
                    skills=wait.skills,
                    queue=wait.queue,
                    reserve=False,
                )
            )
        if not orders:
            return
        results = await workflow.execute_activity_method(
            RoutingActivities.dispatch,
            DispatchBatch(source=f"agent {self._policy.id}", orders=orders),
            start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
            retry_policy=activity_options.ROUTING_RETRY,
            summary=f"take {len(orders)} contact(s) from the personal waiting list",
        )
        for result in results:
            if result.outcome is not DispatchOutcome.ROUTED:
                self._held.pop(result.contact_id, None)
                self._changed_view()

    async def _tell_queues(self) -> None:
        if not self._tell:
            return
        self._tell = False
        queues = sorted(self._told_queues | set(self._policy.queues))
        self._told_queues = set(self._policy.queues)
        view = self.view()
        await asyncio.gather(
            *(signal_if_running(ids.queue_workflow_id(q), "agent_update", view) for q in queues)
        )

    async def _reconcile(self) -> None:
        """Give back the places of contacts that ended or moved on without saying so."""
        cutoff = workflow.now() - RECONCILE_GRACE
        old = [h.contact_id for h in self._held.values() if h.since < cutoff]
        if not old:
            return
        gone = await workflow.execute_activity_method(
            RoutingActivities.held_elsewhere,
            HeldCheck(agent_id=self._policy.id, contact_ids=old),
            start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
            retry_policy=activity_options.ROUTING_RETRY,
            summary="check the contacts held",
        )
        for contact_id in gone:
            if self._held.pop(contact_id, None) is not None:
                workflow.logger.warning(
                    "agent %s: %s no longer holds a place", self._policy.id, contact_id
                )
                self._changed_view()

    def _carried(self) -> AgentInput:
        return AgentInput(
            policy=self._policy,
            presence=self._presence,
            presence_since=self._presence_since,
            idle_since=self._idle_since,
            held=list(self._held.values()),
            personal=self._personal,
            seq=self._seq,
            max_load=self._max_load,
            contacts_taken=self._taken,
            reconcile_every_seconds=self._reconcile_every.total_seconds(),
            alarm=self._alarm,
        )

    def _publish(self) -> None:
        if self._presence is not self._published_presence:
            workflow.upsert_search_attributes([sa.PRESENCE.value_set(self._presence.value)])
            self._published_presence = self._presence
        held = len(self._held)
        since = (
            f" since {self._presence_since:%Y-%m-%d %H:%M:%S} UTC" if self._presence_since else ""
        )
        workflow.set_current_details(
            f"**{self._presence.value}**{since} · {held} of {self._policy.capacity} · "
            f"{len(self._personal)} waiting for them in person · "
            f"{'email: ' + self._policy.email if self._policy.email else 'built-in interface'}"
        )

"""A routed contact's life as a phase machine: it waits in a queue or in one agent's personal
list, is offered or delivered to an agent, and stays open until closed. Every command of the
router, the agents and the operators is carried out in its main loop, one at a time; a
decision for an earlier round is refused and the agent's place given back."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import ids, metrics
    from ace_email.contracts import search_attributes as sa
    from ace_email.contracts.base import Channel
    from ace_email.contracts.contact import (
        AssignRequest,
        BounceNote,
        CommandResult,
        ContactStatus,
        OverflowNotice,
        ReplyNote,
        ReplyRequest,
        RouteRequest,
        TransferRequest,
    )
    from ace_email.contracts.mail_work import (
        ArchiveRequest,
    )
    from ace_email.contracts.message import Routing
    from ace_email.contracts.queues import (
        MailAlarm,
        PersonalWait,
        Release,
        Reservation,
        Waiting,
        Withdrawal,
    )
    from ace_email.decisions.matching import DeliveryMode, delivery_mode
    from activities.mailbox import MailboxActivities
    from activities.routing import (
        EnqueueRequest,
        HoldRequest,
        PersonalWaitRequest,
        RoutingActivities,
    )
    from workflows.contact.base import (
        FOLLOW_UPS_SHOWN,
    )
    from workflows.contact.phases import (
        Accept,
        Agent,
        Assign,
        Close,
        Command,
        Decline,
        DeliveryBounced,
        Forward,
        Overflow,
        Phase,
        Reply,
        Requeue,
        Route,
        Transfer,
    )
    from workflows.messaging import signal_if_running
    from workflows.metrics import count
from workflows.contact.follow_ups import FollowUps
from workflows.contact.forwarding import Forwarding

ONE_SECOND = timedelta(seconds=1)


class RoutedLife(FollowUps, Forwarding):
    """Queue, agent, close: the contact's main loop and what each command does."""

    async def _routed_life(self, routing: Routing | None) -> None:
        """Wait in a queue, go to an agent, and stay open until closed; every command of the
        router, the agents and the operators is carried out here, one at a time."""
        self._routing_era = True
        now = workflow.now()
        received = self._state.received_at or now
        # INTERNALDATE counts whole seconds: within its second, our own clock orders better.
        arrived = min(self._arrived_at + ONE_SECOND, received) if self._arrived_at else received
        self._state.waiting_since = arrived
        self._state.channel = self._channel
        if not self._analysed_at_poll:  # else set at its start
            workflow.upsert_search_attributes([sa.CHANNEL.value_set(self._channel.value)])
        await self._enter_queue(routing.queue if routing else self._state.queue, entered_at=now)
        if self._closed:  # the `close` signal came while it was being claimed
            self._commands.append(Close())
        while not self._closed_now():
            with suppress(TimeoutError):
                await workflow.wait_condition(self._has_work, timeout=self._time_left())
            await self._settle_duplicates()
            await self._pass_on_follow_ups()
            if self._deadline is not None and workflow.now() >= self._deadline:
                await self._deadline_passed()
            while self._commands and not self._closed_now():
                await self._carry_out(self._commands.popleft())
        for command in self._commands:
            command.refusal = f"contact {self._state.id} is closed"
            command.done = True
        self._commands.clear()

    def _closed_now(self) -> bool:
        return self._phase is Phase.CLOSED

    def _has_work(self) -> bool:
        delivered = self._state.status is ContactStatus.DELIVERED
        return bool(self._commands or self._duplicates or (delivered and self._follow_ups))

    def _time_left(self) -> timedelta | None:
        if self._deadline is None:
            return None
        return max(self._deadline - workflow.now(), timedelta(0))

    async def _carry_out(self, command: Command) -> None:
        superseded = isinstance(command, Route) and command.request.round != self._round
        if self._phase not in command.phases or superseded:
            command.refusal = f"contact {self._state.id} is {self._describe_phase()} now"
            if isinstance(command, Route):
                await self._release(command.request.agent_id)  # overtaken: its place back
        else:
            match command:
                case Route(request=request):
                    await self._take_route(request)
                case Assign(request=assignment):
                    await self._assign_directly(assignment)
                case Accept():
                    self._accept()
                case Decline():
                    await self._back_from_offer("declined")
                case Transfer(request=transfer):
                    await self._transfer(transfer)
                case Requeue():
                    await self._leave()
                    await self._enter_queue(self._state.queue, entered_at=self._entered_at)
                case Forward(request=forward):
                    if problem := await self._send_on(forward):
                        command.refusal = f"not sent on to {forward.to}: {problem}"
                case DeliveryBounced(note=note):
                    if problem := await self._delivery_bounced(note):
                        command.refusal = problem
                case Overflow(notice=notice):
                    await self._overflow(notice)
                case Reply(request=reply):
                    if problem := await self._send_reply(reply):
                        command.refusal = f"the reply was not sent: {problem}"
                case Close():
                    await self._close()
            command.result = CommandResult(
                contact_id=self._state.id,
                status=self._state.status,
                detail=self._state.last_error or "",
            )
        command.done = True

    async def _delivery_bounced(self, note: BounceNote) -> str | None:
        """The agent's own mailbox refused the contact: an operator alarm. The agent is set
        not-ready and passed over; the contact goes back to its queue, in its old place."""
        agent = self._agent
        if agent is None or self._state.status is not ContactStatus.DELIVERED:
            return f"contact {self._state.id} is not in an agent's own mailbox now"
        if f".resent.{agent.id}." not in note.message_id:
            return f"the bounced delivery went to another agent than {agent.id}"
        failed = next((r for r in note.recipients if r.address), None)
        address = failed.address if failed else (agent.email or "")
        detail = failed.describe() if failed else "bounce"
        workflow.logger.error(
            "ALARM %s: delivery of %s to agent %s at %s bounced (%s); the agent is set "
            "not-ready and the contact goes back to queue %s",
            self._policy.name,
            self._state.id,
            agent.id,
            address,
            detail,
            self._state.queue,
        )
        count(metrics.AGENT_MAIL_BOUNCES, account=self._policy.name)
        await signal_if_running(
            ids.agent_workflow_id(agent.id),
            "mail_bounced",
            MailAlarm(contact_id=self._state.id, address=address, detail=detail),
        )
        if agent.id not in self._state.excluded_agents:
            self._state.excluded_agents = [*self._state.excluded_agents, agent.id]
        await self._leave()
        await self._enter_queue(self._state.queue, entered_at=self._entered_at)
        return None

    async def _enter_queue(self, queue: str, *, entered_at: datetime | None) -> None:
        """Wait in `queue`; `entered_at` kept from before returns it to its old place."""
        now = workflow.now()
        self._round += 1
        self._phase = Phase.QUEUE
        self._deadline = None
        self._entered_at = entered_at or now
        if queue != self._state.queue:
            workflow.upsert_search_attributes([sa.QUEUE.value_set(queue)])
        self._state.queue = queue
        self._state.round = self._round
        self._state.entered_queue_at = self._entered_at
        self._state.waiting_for = None
        self._state.waiting_until = None
        self._set_status(ContactStatus.QUEUED)
        await self._routing(
            RoutingActivities.enqueue,
            EnqueueRequest(
                queue=queue,
                entry=Waiting(
                    contact_id=self._state.id,
                    round=self._round,
                    priority=self._state.priority,
                    waiting_since=self._state.waiting_since or now,
                    entered_at=self._entered_at,
                    skills=self._state.skills,
                    channel=self._channel,
                    excluded=self._state.excluded_agents,
                ),
            ),
            f"wait in queue {queue}",
        )

    async def _enter_personal(self, agent_id: str, wait: timedelta) -> None:
        """Wait in one agent's personal waiting list, for at most `wait`."""
        now = workflow.now()
        self._round += 1
        self._phase = Phase.PERSONAL
        self._deadline = now + wait
        self._state.round = self._round
        self._state.waiting_for = agent_id
        self._state.waiting_until = self._deadline
        self._set_status(ContactStatus.QUEUED)
        await self._routing(
            RoutingActivities.wait_for_agent,
            PersonalWaitRequest(
                agent_id=agent_id,
                wait=PersonalWait(
                    contact_id=self._state.id,
                    round=self._round,
                    channel=self._channel,
                    queue=self._state.queue,
                    skills=self._state.skills,
                    since=now,
                    until=self._deadline,
                ),
            ),
            f"wait for {agent_id} in person",
        )

    async def _leave(self, *, closing: bool = False) -> None:
        """Out of the place it is in: a queue, a personal list, an offer or an agent's hands.
        A message already delivered to an agent's mailbox goes back to processing, so that
        the next agent gets it too; a closing contact stays in the archive and keeps the
        agent who had it on record."""
        phase, self._phase = self._phase, Phase.MOVING
        self._deadline = None
        if phase is Phase.QUEUE:
            await self._withdraw(ids.queue_workflow_id(self._state.queue), "withdraw")
        elif phase is Phase.PERSONAL and self._state.waiting_for:
            agent_id = self._state.waiting_for
            await self._withdraw(ids.agent_workflow_id(agent_id), "withdraw_personal")
        elif phase in (Phase.OFFERED, Phase.WITH_AGENT) and self._agent is not None:
            await self._release(self._agent.id)
            if not closing and self._state.status is ContactStatus.DELIVERED:
                await self._move_own_message(self._policy.processing_folder, "reopen")
                await self._reopen_follow_ups()
        if closing:
            return
        self._agent = None
        workflow.upsert_search_attributes([sa.AGENT.value_unset()])
        self._state.agent = None
        self._state.agent_email = None
        self._state.waiting_for = None
        self._state.waiting_until = None
        self._state.offer_expires_at = None

    async def _withdraw(self, workflow_id: str, signal: str) -> None:
        withdrawal = Withdrawal(contact_id=self._state.id, round=self._round)
        await signal_if_running(workflow_id, signal, withdrawal)

    async def _release(self, agent_id: str) -> None:
        release = Release(contact_id=self._state.id)
        await signal_if_running(ids.agent_workflow_id(agent_id), "release", release)

    async def _hold(self, agent_id: str) -> None:
        await self._routing(
            RoutingActivities.hold,
            HoldRequest(
                agent_id=agent_id,
                reservation=Reservation(
                    contact_id=self._state.id,
                    channel=self._channel,
                    queue=self._state.queue,
                    skills=self._state.skills,
                    force=True,
                ),
            ),
            f"take a place with {agent_id}",
        )

    def _take_agent(self, agent: Agent, *, routed_by: str, routed_sequence: int | None) -> None:
        """The contact is now `agent`'s (offered or taken)."""
        self._agent = agent
        workflow.upsert_search_attributes([sa.AGENT.value_set(agent.id)])
        state = self._state
        state.agent, state.agent_email = agent.id, agent.email
        state.assigned_at = workflow.now()
        state.waiting_for = state.waiting_until = None
        state.last_error = None
        state.routed_by, state.routed_sequence = routed_by, routed_sequence

    async def _take_route(self, request: RouteRequest) -> None:
        """A queue or a personal waiting list gave this contact to an agent."""
        self._phase = Phase.MOVING
        self._deadline = None
        agent = Agent(request.agent_id, request.agent_name, request.agent_email)
        self._take_agent(agent, routed_by=request.source, routed_sequence=request.sequence)
        if delivery_mode(self._channel, agent.email) is DeliveryMode.EXTERNAL:
            await self._deliver_to(agent)
            return
        self._phase = Phase.OFFERED
        self._deadline = workflow.now() + timedelta(seconds=request.offer_timeout_seconds)
        self._state.offer_expires_at = self._deadline
        self._set_status(ContactStatus.OFFERED)

    async def _assign_directly(self, request: AssignRequest) -> None:
        """An operator's choice: out of the queue (or offer), straight to the agent, who
        keeps it whatever their load. Never to an agent's mailbox unless it is an email."""
        if self._phase is Phase.OFFERED and self._agent and self._agent.id == request.agent_id:
            self._accept()
            return
        await self._leave()
        await self._hold(request.agent_id)
        agent = Agent(request.agent_id, request.agent_name, request.agent_email)
        self._take_agent(agent, routed_by="operator", routed_sequence=None)
        if delivery_mode(self._channel, agent.email) is DeliveryMode.EXTERNAL:
            await self._deliver_to(agent)
        else:
            self._phase = Phase.WITH_AGENT
            self._set_status(ContactStatus.ASSIGNED)

    async def _deliver_to(self, agent: Agent) -> None:
        """Resend the email to the agent's mailbox. Refused for good (the address does not
        exist, say), the agent's place is freed and the contact returns to its place."""
        assert agent.email is not None and self._channel is Channel.EMAIL
        self._phase = Phase.MOVING
        self._set_status(ContactStatus.DELIVERING)
        archived = await self._deliver_message(self._ref, agent.id, agent.email)
        if archived is None:
            error = self._state.last_error
            await self._release(agent.id)
            self._exclude(agent.id)
            await self._leave_agent_fields()
            await self._enter_queue(self._state.queue, entered_at=self._entered_at)
            self._state.last_error = error
            self._update_details()
            return
        self._ref = archived
        self._phase = Phase.WITH_AGENT
        self._state.message = archived
        self._state.last_error = None
        self._set_status(ContactStatus.DELIVERED)
        await self._pass_on_follow_ups()

    async def _leave_agent_fields(self) -> None:
        self._agent = None
        workflow.upsert_search_attributes([sa.AGENT.value_unset()])
        self._state.agent = None
        self._state.agent_email = None

    def _accept(self) -> None:
        self._phase = Phase.WITH_AGENT
        self._deadline = None
        self._state.offer_expires_at = None
        self._set_status(ContactStatus.ASSIGNED)

    async def _back_from_offer(self, why: str) -> None:
        """Declined or timed out: back to its place in the queue, never offered to them again."""
        agent = self._agent
        await self._leave()
        if agent is not None:
            self._exclude(agent.id)
            self._state.last_error = f"offer to {agent.id} {why}"
        await self._enter_queue(self._state.queue, entered_at=self._entered_at)

    def _exclude(self, agent_id: str) -> None:
        if agent_id not in self._state.excluded_agents:
            excluded = [*self._state.excluded_agents, agent_id]
            self._state.excluded_agents = excluded

    async def _deadline_passed(self) -> None:
        if self._phase is Phase.OFFERED:
            await self._back_from_offer("timed out")
        elif self._phase is Phase.PERSONAL:
            agent = self._state.waiting_for
            await self._leave()
            self._state.last_error = f"{agent} did not take it in time; back in the queue"
            await self._enter_queue(self._state.queue, entered_at=self._entered_at)
        else:
            self._deadline = None

    async def _transfer(self, request: TransferRequest) -> None:
        await self._leave()
        self._state.last_error = None
        if request.agent_id is not None:
            await self._enter_personal(
                request.agent_id, timedelta(seconds=request.personal_wait_seconds)
            )
            return
        queue = request.queue or self._state.queue
        if queue != self._state.queue:
            self._state.excluded_agents = []
            await self._enter_queue(queue, entered_at=None)
        else:
            await self._enter_queue(queue, entered_at=self._entered_at)

    async def _overflow(self, notice: OverflowNotice) -> None:
        """The queue has let it go already: no withdrawal, straight into the next queue."""
        if notice.round != self._round or notice.from_queue != self._state.queue:
            return
        self._phase = Phase.MOVING
        self._state.excluded_agents = []
        await self._enter_queue(notice.to_queue, entered_at=None)

    async def _close(self) -> None:
        """Done: the agent's place is freed, the message and its follow-ups archived."""
        self._state.closed_at = workflow.now()
        await self._leave(closing=True)
        await self._move_own_message(self._policy.archive_folder, "archive")
        while self._follow_ups:
            follow_up = self._follow_ups.pop(0)
            await self._imap(
                MailboxActivities.archive_message,
                ArchiveRequest(ref=follow_up.ref, archive_folder=self._policy.archive_folder),
                "archive a follow-up",
            )
        self._phase = Phase.CLOSED
        self._set_status(ContactStatus.CLOSED)

    async def _send_reply(self, request: ReplyRequest) -> str | None:
        """A reply from the built-in interface: from the outbox to the customer, recorded in
        the Sent folder. An SMTP refusal is recorded and returned; the contact stays open."""
        try:
            result = await self._send_from_outbox(request.message_id, request.to, "reply")
        except ActivityError as err:
            return self._note_failure(err)
        replies = self._state.replies
        if all(n.message_id != result.message_id for n in replies):  # the same text, sent once
            note = ReplyNote(message_id=result.message_id, to=request.to, at=workflow.now())
            replies = [*replies, note][-FOLLOW_UPS_SHOWN:]
        self._state.replies = replies
        self._state.last_error = None
        self._update_details()
        if request.close:
            await self._close()
        return None

    def _describe_phase(self) -> str:
        status = self._state.status.value
        if self._phase is Phase.MOVING:
            return f"{status} and being moved"
        if self._phase is Phase.PERSONAL:
            return f"waiting for {self._state.waiting_for} in person"
        return status

"""ContactWorkflow: one email, one contact — claimed, analysed, acknowledged, queued, delivered."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict
from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import ids
    from ace_email.contracts import search_attributes as sa
    from ace_email.contracts.base import Channel, Model
    from ace_email.contracts.contact import (
        AssignRequest,
        AssignResult,
        CommandResult,
        ContactInput,
        ContactState,
        ContactStatus,
        FollowUp,
        FollowUpNote,
        FollowUpQuery,
        FollowUpTarget,
        OfferAnswer,
        OverflowNotice,
        ReplyNote,
        ReplyRequest,
        RouteAnswer,
        RouteRequest,
        TransferRequest,
    )
    from ace_email.contracts.ledger import ReserveReplyRequest, ReserveReplyResult
    from ace_email.contracts.mail_work import (
        ArchiveRequest,
        AutoReplyRequest,
        ClaimRequest,
        DeliverRequest,
        MoveRequest,
        SendReplyRequest,
        SettleDuplicateRequest,
    )
    from ace_email.contracts.mailbox import AccountPolicy
    from ace_email.contracts.message import Analysis, MessageRef, Routing
    from ace_email.contracts.queues import PersonalWait, Release, Reservation, Waiting, Withdrawal
    from ace_email.decisions.auto_reply import decide_auto_reply
    from ace_email.decisions.matching import DeliveryMode, delivery_mode
    from activities.auto_reply_ledger import LedgerActivities
    from activities.follow_ups import FollowUpActivities
    from activities.mailbox import MailboxActivities
    from activities.outbound import OutboundActivities
    from activities.routing import (
        EnqueueRequest,
        HoldRequest,
        PersonalWaitRequest,
        RoutingActivities,
    )
    from workflows import policies
    from workflows.messaging import signal_if_running

FOLLOW_UPS_SHOWN = 50
ONE_SECOND = timedelta(seconds=1)
# Contacts begun before rules, follow-ups and the reply ledger existed replay without them.
RULES_PATCH = "analysis-rules-follow-ups-ledger"
# Contacts begun before queues and agents routed them wait for `assign` and end when delivered.
ROUTING_PATCH = "routing"
# Contacts begun before follow-ups moved on with them leave delivered follow-ups archived.
FOLLOW_UPS_MOVE_PATCH = "follow-ups-move-on"
# Contacts that moved on before every follow-up did kept only the last one of several.
ALL_FOLLOW_UPS_MOVE_PATCH = "all-follow-ups-move-on"

_STATE_WORDS = {
    ContactStatus.RECEIVED: "Received; being claimed and analysed.",
    ContactStatus.QUEUED: "Waiting in queue **{queue}** for an agent.",
    ContactStatus.DELIVERING: "Assigned to **{agent}**; delivering to the agent's address.",
    ContactStatus.ASSIGNED: "With **{agent}** in the built-in agent interface.",
    ContactStatus.DELIVERED: "Delivered to **{agent}** ({agent_email}); original archived.",
    ContactStatus.QUARANTINED: "Quarantined: {quarantine_reason}",
    ContactStatus.MISSING: "The message is no longer in the mailbox; nothing to do.",
    ContactStatus.JOINED: "A follow-up: joined contact **{joined_to}**.",
    ContactStatus.OFFERED: "Offered to **{agent}** until {offer_expires_at} UTC.",
    ContactStatus.CLOSED: "Closed.",
}


class _Phase(StrEnum):
    """Where a routed contact is; `MOVING` while it goes from one place to the next."""

    QUEUE = "queue"
    PERSONAL = "personal"
    MOVING = "moving"
    OFFERED = "offered"
    WITH_AGENT = "with-agent"
    CLOSED = "closed"


WAITING = (_Phase.QUEUE, _Phase.PERSONAL)
ASSIGNABLE = (*WAITING, _Phase.OFFERED)
NOT_IN_QUEUE = (_Phase.PERSONAL, _Phase.OFFERED, _Phase.WITH_AGENT)
OPEN = (*ASSIGNABLE, _Phase.WITH_AGENT, _Phase.MOVING)


class _ContactRecord(ContactState):
    """The contact's state as its workflow keeps it: changed in place, handed out by the query
    and as the result as the ContactState it is."""

    model_config = ConfigDict(frozen=False)


@dataclass(frozen=True)
class _Agent:
    id: str
    name: str = ""
    email: str | None = None


@dataclass
class _Command:
    """A request carried out by the contact's main loop, one at a time, in arrival order,
    if the contact is still in one of `phases` when its turn comes."""

    kind: str
    request: Model | None = None
    phases: tuple[_Phase, ...] = ()
    result: CommandResult | None = None
    refusal: str | None = None
    done: bool = False


@workflow.defn
class ContactWorkflow:
    """A contact's whole life. Its id is business-keyed: `contact-<account>-<content key>`."""

    @workflow.init
    def __init__(self, contact: ContactInput) -> None:
        self._policy: AccountPolicy = contact.policy
        self._ref: MessageRef = contact.ref
        self._state = _ContactRecord(
            id=workflow.info().workflow_id,
            status=ContactStatus.RECEIVED,
            account=contact.policy.name,
            queue=contact.policy.queue,
            reference=ids.contact_reference(contact.ref.key),
            message=contact.ref,
            received_at=workflow.now(),
        )
        if contact.released is not None:
            self._state.released = contact.released
        self._channel = contact.channel
        self._work_item = contact.work_item
        self._arrived_at = contact.arrived_at
        if contact.work_item is not None:
            key = ids.contact_key(workflow.info().workflow_id, contact.policy.name)
            self._state.reference = ids.contact_reference(key)
            self._state.channel = contact.channel
            self._state.queue = contact.work_item.queue
            self._state.reply_to = contact.work_item.reply_to
            self._state.external_id = contact.work_item.external_id
        self._assignment: AssignRequest | None = None
        self._duplicates: list[MessageRef] = []
        self._follow_ups: list[FollowUp] = []
        self._delivered_follow_ups: list[FollowUp] = []
        self._closed = False
        self._rules_era = False
        self._routing_era = False
        self._phase: _Phase | None = None
        self._round = 0
        self._entered_at: datetime | None = None
        self._agent: _Agent | None = None
        self._accepted_route: tuple[str, int] | None = None
        self._deadline: datetime | None = None
        self._commands: deque[_Command] = deque()

    @workflow.run
    async def run(self, contact: ContactInput) -> ContactState:
        claim = await workflow.execute_activity_method(
            MailboxActivities.claim_message,
            ClaimRequest(
                ref=self._ref,
                policy=self._policy,
                received_at=self._state.received_at,
                released=contact.released is not None,
            ),
            start_to_close_timeout=policies.imap_timeout(self._policy),
            retry_policy=policies.IMAP_RETRY,
            summary="claim and analyse",
        )
        if claim.ref is None or claim.analysis is None:
            self._set_status(ContactStatus.MISSING)
            return await self._finish()
        self._ref = claim.ref
        self._rules_era = workflow.patched(RULES_PATCH)
        analysis, routing = claim.analysis, claim.routing
        if self._work_item is not None:
            analysis = analysis.model_copy(update={"quarantine_reason": None})
            routing = Routing(
                rule=f"{self._channel.value} intake",
                queue=self._work_item.queue,
                priority=self._work_item.priority,
                skills=self._work_item.skills,
            )
        self._take_analysis(analysis, routing)
        if analysis.quarantine_reason:
            self._set_status(ContactStatus.QUARANTINED)
            return await self._finish()
        if (
            self._rules_era
            and self._channel is Channel.EMAIL
            and await self._join_open_contact(analysis)
        ):
            return await self._finish()

        auto_reply = asyncio.create_task(self._auto_reply(analysis, routing))
        self._state.queued_at = workflow.now()
        self._set_status(ContactStatus.QUEUED)
        if workflow.patched(ROUTING_PATCH):
            await self._routed_life(routing)
        else:
            await self._serve_queue()
        while not auto_reply.done() or self._follow_ups or self._duplicates:
            await workflow.wait_condition(
                lambda: auto_reply.done() or bool(self._follow_ups) or bool(self._duplicates)
            )
            await self._deliver_follow_ups()
            await self._settle_duplicates()
        await auto_reply
        return await self._finish()

    @workflow.query
    def status(self) -> ContactState:
        return self._state

    @workflow.signal
    def duplicate_seen(self, duplicate: MessageRef) -> None:
        """The poller found a second copy of this email in the inbox."""
        self._duplicates.append(duplicate)

    @workflow.signal
    def follow_up(self, follow_up: FollowUp) -> None:
        """Another email of this contact's thread. A person's is given to the same agent;
        automatic mail (an absence notice, a bounce) is only recorded."""
        note = FollowUpNote(
            contact_id=follow_up.contact_id,
            subject=follow_up.subject,
            automatic=follow_up.automatic,
            received_at=follow_up.received_at,
        )
        notes = [*self._state.follow_ups, note][-FOLLOW_UPS_SHOWN:]
        self._state.follow_ups = notes
        if not follow_up.automatic:
            self._follow_ups.append(follow_up)

    @workflow.signal
    def close(self) -> None:
        """Closes the contact (`close_contact` answers; this signal is for older scripts)."""
        if self._routing_era:
            self._commands.append(_Command("close", None, OPEN))
        else:
            self._closed = True

    @workflow.signal
    def overflow(self, notice: OverflowNotice) -> None:
        """The queue let this contact wait long enough: on to the overflow queue."""
        self._commands.append(_Command("overflow", notice, (_Phase.QUEUE,)))

    @workflow.update
    async def assign(self, request: AssignRequest) -> AssignResult:
        """Give the contact to an agent directly, bypassing the queue's order; answers once
        delivered, or after a short wait."""
        if self._routing_era:
            result = await self._run_command("assign", request, ASSIGNABLE)
            return AssignResult(
                contact_id=self._state.id,
                status=result.status,
                agent_id=request.agent_id,
                detail=result.detail,
            )
        self._assignment = request
        with suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: (
                    self._assignment is None
                    or self._state.status in (ContactStatus.DELIVERED, ContactStatus.ASSIGNED)
                ),
                timeout=policies.ASSIGN_ANSWER_WAIT,
            )
        return AssignResult(
            contact_id=self._state.id,
            status=self._state.status,
            agent_id=request.agent_id,
            detail=self._state.last_error or "",
        )

    @assign.validator
    def _validate_assign(self, request: AssignRequest) -> None:
        if self._routing_era:
            self._require(ASSIGNABLE, "only a queued contact can be assigned (or one on offer)")
        elif self._state.status is not ContactStatus.QUEUED or self._assignment is not None:
            raise ValueError(
                f"contact {self._state.id} is {self._state.status.value}; "
                "only a queued contact can be assigned"
            )
        if not request.agent_id.strip():
            raise ValueError("agent id is empty")
        if request.agent_email is not None and "@" not in request.agent_email:
            raise ValueError(f"agent {request.agent_id} has no valid email address")

    @workflow.update
    def route(self, request: RouteRequest) -> RouteAnswer:
        """A queue or the agent's personal waiting list gives this contact to an agent. Only
        the place it waits in now may: an answer for an earlier round is refused, and the
        router gives the agent's place back."""
        if self._accepted_route == (request.agent_id, request.round):
            return RouteAnswer(accepted=True, reason="already accepted")
        taken = self._accepted_route is not None and self._accepted_route[1] == request.round
        if taken or self._phase not in WAITING or request.round != self._round:
            return RouteAnswer(
                accepted=False,
                reason=f"contact {self._state.id} no longer waits where it did in round "
                f"{request.round}",
            )
        self._accepted_route = (request.agent_id, request.round)
        self._commands.append(_Command("route", request, WAITING))
        return RouteAnswer(accepted=True)

    @workflow.update
    async def accept_offer(self, answer: OfferAnswer) -> CommandResult:
        return await self._run_command("accept", answer, (_Phase.OFFERED,))

    @accept_offer.validator
    def _validate_accept(self, answer: OfferAnswer) -> None:
        self._require_offer_to(answer.agent_id)

    @workflow.update
    async def decline_offer(self, answer: OfferAnswer) -> CommandResult:
        return await self._run_command("decline", answer, (_Phase.OFFERED,))

    @decline_offer.validator
    def _validate_decline(self, answer: OfferAnswer) -> None:
        self._require_offer_to(answer.agent_id)

    @workflow.update
    async def transfer(self, request: TransferRequest) -> CommandResult:
        """To another queue, or to one agent's personal waiting list."""
        return await self._run_command("transfer", request, OPEN)

    @transfer.validator
    def _validate_transfer(self, request: TransferRequest) -> None:
        self._require(OPEN, "only an open contact can be transferred")
        if (request.queue is None) == (request.agent_id is None):
            raise ValueError("transfer to a queue or to an agent, not both or neither")
        agent = self._agent
        if agent and agent.id == request.agent_id and self._phase is _Phase.WITH_AGENT:
            raise ValueError(f"contact {self._state.id} is with {request.agent_id} already")

    @workflow.update
    async def requeue(self) -> CommandResult:
        """Back to its queue, in its old place."""
        return await self._run_command("requeue", None, NOT_IN_QUEUE)

    @requeue.validator
    def _validate_requeue(self) -> None:
        self._require(NOT_IN_QUEUE, "only a contact that has left its queue can be requeued")

    @workflow.update
    async def close_contact(self) -> CommandResult:
        """Done: the agent's place is freed and the message archived."""
        return await self._run_command("close", None, OPEN)

    @close_contact.validator
    def _validate_close(self) -> None:
        self._require(OPEN, "it is not open")

    @workflow.update
    async def reply(self, request: ReplyRequest) -> CommandResult:
        """Send a reply written in the built-in interface (waiting in the outbox)."""
        return await self._run_command("reply", request, (_Phase.WITH_AGENT,))

    @reply.validator
    def _validate_reply(self, request: ReplyRequest) -> None:
        self._require((_Phase.WITH_AGENT,), "only a contact an agent works on can be replied to")
        if self._state.status is not ContactStatus.ASSIGNED:
            raise ValueError(
                f"contact {self._state.id} is {self._state.status.value} to the agent's own "
                "mailbox; the agent replies from there"
            )
        if not request.to:
            raise ValueError(f"contact {self._state.id} has no address to reply to")

    def _require(self, phases: tuple[_Phase, ...], what: str) -> None:
        if self._state.status is ContactStatus.RECEIVED:
            raise ValueError(
                f"contact {self._state.id} is still being claimed and analysed; try again in "
                "a moment"
            )
        if not self._routing_era or self._phase is None:
            raise ValueError(
                f"contact {self._state.id} is {self._state.status.value} and was begun before "
                f"routing: {what}"
            )
        if self._phase not in phases:
            raise ValueError(f"contact {self._state.id} is {self._describe_phase()}; {what}")

    def _require_offer_to(self, agent_id: str) -> None:
        self._require((_Phase.OFFERED,), "only an offered contact can be accepted or declined")
        if self._agent is None or self._agent.id != agent_id:
            offered = self._agent.id if self._agent else "nobody"
            raise ValueError(f"contact {self._state.id} is offered to {offered}, not {agent_id}")

    def _describe_phase(self) -> str:
        status = self._state.status.value
        if self._phase is _Phase.MOVING:
            return f"{status} and being moved"
        if self._phase is _Phase.PERSONAL:
            return f"waiting for {self._state.waiting_for} in person"
        return status

    async def _run_command(
        self, kind: str, request: Model | None, phases: tuple[_Phase, ...]
    ) -> CommandResult:
        """Queue a command for the main loop; answer when it is done, or after a while. The
        loop checks it again when its turn comes: by then it may no longer apply."""
        command = _Command(kind, request, phases)
        self._commands.append(command)
        with suppress(TimeoutError):
            await workflow.wait_condition(lambda: command.done, timeout=policies.ASSIGN_ANSWER_WAIT)
        if command.refusal is not None:
            raise ApplicationError(command.refusal, type="Refused", non_retryable=True)
        if isinstance(command.result, CommandResult):
            return command.result
        return CommandResult(
            contact_id=self._state.id,
            status=self._state.status,
            detail=f"still in progress: {self._describe_phase()}",
        )

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
        workflow.upsert_search_attributes([sa.CHANNEL.value_set(self._channel.value)])
        await self._enter_queue(routing.queue if routing else self._state.queue, entered_at=now)
        if self._closed:  # the `close` signal came while it was being claimed
            self._commands.append(_Command("close", None, OPEN))
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
        return self._phase is _Phase.CLOSED

    def _has_work(self) -> bool:
        delivered = self._state.status is ContactStatus.DELIVERED
        return bool(self._commands or self._duplicates or (delivered and self._follow_ups))

    def _time_left(self) -> timedelta | None:
        if self._deadline is None:
            return None
        return max(self._deadline - workflow.now(), timedelta(0))

    async def _carry_out(self, command: _Command) -> None:
        request = command.request
        superseded = isinstance(request, RouteRequest) and request.round != self._round
        if self._phase not in command.phases or superseded:
            command.refusal = f"contact {self._state.id} is {self._describe_phase()} now"
            if isinstance(request, RouteRequest):
                await self._release(request.agent_id)  # overtaken by a command: place back
        else:
            if command.kind == "route" and isinstance(request, RouteRequest):
                await self._take_route(request)
            elif command.kind == "assign" and isinstance(request, AssignRequest):
                await self._assign_directly(request)
            elif command.kind == "accept":
                self._accept()
            elif command.kind == "decline":
                await self._back_from_offer("declined")
            elif command.kind == "transfer" and isinstance(request, TransferRequest):
                await self._transfer(request)
            elif command.kind == "requeue":
                await self._leave()
                await self._enter_queue(self._state.queue, entered_at=self._entered_at)
            elif command.kind == "overflow" and isinstance(request, OverflowNotice):
                await self._overflow(request)
            elif command.kind == "reply" and isinstance(request, ReplyRequest):
                if failure := await self._send_reply(request):
                    command.refusal = f"the reply was not sent: {failure}"
            elif command.kind == "close":
                await self._close()
            command.result = CommandResult(
                contact_id=self._state.id,
                status=self._state.status,
                detail=self._state.last_error or "",
            )
        command.done = True

    async def _enter_queue(self, queue: str, *, entered_at: datetime | None) -> None:
        """Wait in `queue`; `entered_at` kept from before returns it to its old place."""
        now = workflow.now()
        self._round += 1
        self._phase = _Phase.QUEUE
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
        await workflow.execute_activity_method(
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
            start_to_close_timeout=policies.ROUTING_TIMEOUT,
            retry_policy=policies.ROUTING_RETRY,
            summary=f"wait in queue {queue}",
        )

    async def _enter_personal(self, agent_id: str, wait: timedelta) -> None:
        """Wait in one agent's personal waiting list, for at most `wait`."""
        now = workflow.now()
        self._round += 1
        self._phase = _Phase.PERSONAL
        self._deadline = now + wait
        self._state.round = self._round
        self._state.waiting_for = agent_id
        self._state.waiting_until = self._deadline
        self._set_status(ContactStatus.QUEUED)
        await workflow.execute_activity_method(
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
            start_to_close_timeout=policies.ROUTING_TIMEOUT,
            retry_policy=policies.ROUTING_RETRY,
            summary=f"wait for {agent_id} in person",
        )

    async def _leave(self, *, closing: bool = False) -> None:
        """Out of the place it is in: a queue, a personal list, an offer or an agent's hands.
        A message already delivered to an agent's mailbox goes back to processing, so that
        the next agent gets it too; a closing contact stays in the archive and keeps the
        agent who had it on record."""
        phase, self._phase = self._phase, _Phase.MOVING
        self._deadline = None
        if phase is _Phase.QUEUE:
            await self._withdraw(ids.queue_workflow_id(self._state.queue), "withdraw")
        elif phase is _Phase.PERSONAL and self._state.waiting_for:
            agent_id = self._state.waiting_for
            await self._withdraw(ids.agent_workflow_id(agent_id), "withdraw_personal")
        elif phase in (_Phase.OFFERED, _Phase.WITH_AGENT) and self._agent is not None:
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
        await workflow.execute_activity_method(
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
            start_to_close_timeout=policies.ROUTING_TIMEOUT,
            retry_policy=policies.ROUTING_RETRY,
            summary=f"take a place with {agent_id}",
        )

    def _take_agent(self, agent: _Agent, *, routed_by: str, routed_sequence: int | None) -> None:
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
        self._phase = _Phase.MOVING
        self._deadline = None
        agent = _Agent(request.agent_id, request.agent_name, request.agent_email)
        self._take_agent(agent, routed_by=request.source, routed_sequence=request.sequence)
        if delivery_mode(self._channel, agent.email) is DeliveryMode.EXTERNAL:
            await self._deliver_to(agent)
            return
        self._phase = _Phase.OFFERED
        self._deadline = workflow.now() + timedelta(seconds=request.offer_timeout_seconds)
        self._state.offer_expires_at = self._deadline
        self._set_status(ContactStatus.OFFERED)

    async def _assign_directly(self, request: AssignRequest) -> None:
        """An operator's choice: out of the queue (or offer), straight to the agent, who
        keeps it whatever their load. Never to an agent's mailbox unless it is an email."""
        if self._phase is _Phase.OFFERED and self._agent and self._agent.id == request.agent_id:
            self._accept()
            return
        await self._leave()
        await self._hold(request.agent_id)
        agent = _Agent(request.agent_id, request.agent_name, request.agent_email)
        self._take_agent(agent, routed_by="operator", routed_sequence=None)
        if delivery_mode(self._channel, agent.email) is DeliveryMode.EXTERNAL:
            await self._deliver_to(agent)
        else:
            self._phase = _Phase.WITH_AGENT
            self._set_status(ContactStatus.ASSIGNED)

    async def _deliver_to(self, agent: _Agent) -> None:
        """Resend the email to the agent's mailbox. Refused for good (the address does not
        exist, say), the agent's place is freed and the contact returns to its place."""
        assert agent.email is not None and self._channel is Channel.EMAIL
        self._phase = _Phase.MOVING
        self._set_status(ContactStatus.DELIVERING)
        archived = await self._deliver_message(self._ref, agent.id, agent.email)
        if archived is None:
            error = self._state.last_error
            await self._release(agent.id)
            self._exclude(agent.id)
            await self._leave_agent_fields()
            await self._enter_queue(self._state.queue, entered_at=self._entered_at)
            self._state.last_error = error
            self._show()
            return
        self._ref = archived
        self._phase = _Phase.WITH_AGENT
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
        self._phase = _Phase.WITH_AGENT
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
        if self._phase is _Phase.OFFERED:
            await self._back_from_offer("timed out")
        elif self._phase is _Phase.PERSONAL:
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
        self._phase = _Phase.MOVING
        self._state.excluded_agents = []
        await self._enter_queue(notice.to_queue, entered_at=None)

    async def _close(self) -> None:
        """Done: the agent's place is freed, the message and its follow-ups archived."""
        self._state.closed_at = workflow.now()
        await self._leave(closing=True)
        await self._move_own_message(self._policy.archive_folder, "archive")
        while self._follow_ups:
            follow_up = self._follow_ups.pop(0)
            await workflow.execute_activity_method(
                MailboxActivities.archive_message,
                ArchiveRequest(ref=follow_up.ref, archive_folder=self._policy.archive_folder),
                start_to_close_timeout=policies.imap_timeout(self._policy),
                retry_policy=policies.IMAP_RETRY,
                summary="archive a follow-up",
            )
        self._phase = _Phase.CLOSED
        self._set_status(ContactStatus.CLOSED)

    async def _move_own_message(self, folder: str, purpose: str) -> None:
        moved = await self._move(self._ref, folder, purpose)
        if moved is not None:
            self._ref = moved
            self._state.message = moved

    async def _move(self, ref: MessageRef, folder: str, purpose: str) -> MessageRef | None:
        return await workflow.execute_activity_method(
            MailboxActivities.move_message,
            MoveRequest(ref=ref, folder=folder),
            start_to_close_timeout=policies.imap_timeout(self._policy),
            retry_policy=policies.IMAP_RETRY,
            summary=purpose,
        )

    async def _reopen_follow_ups(self) -> None:
        """Follow-ups already in the agent's mailbox go back to processing with the email,
        ahead of any still waiting, so that whoever takes the contact next has the thread."""
        if not self._delivered_follow_ups or not workflow.patched(FOLLOW_UPS_MOVE_PATCH):
            return
        every_one = workflow.patched(ALL_FOLLOW_UPS_MOVE_PATCH)
        reopened: list[FollowUp] = []
        for follow_up in self._delivered_follow_ups:
            moved = await self._move(
                follow_up.ref, self._policy.processing_folder, "reopen a follow-up"
            )
            if moved is not None and every_one:
                reopened.append(follow_up.model_copy(update={"ref": moved}))
        if moved is not None and not every_one:  # as it ran before: the last one only
            reopened.append(follow_up.model_copy(update={"ref": moved}))
        self._delivered_follow_ups = []
        self._follow_ups[:0] = reopened
        self._mark_follow_ups({f.contact_id for f in reopened}, delivered=False)

    def _mark_follow_ups(self, contact_ids: set[str], *, delivered: bool) -> None:
        notes = [
            n.model_copy(update={"delivered": delivered}) if n.contact_id in contact_ids else n
            for n in self._state.follow_ups
        ]
        self._state.follow_ups = notes

    async def _send_reply(self, request: ReplyRequest) -> str | None:
        """A reply from the built-in interface: from the outbox to the customer, recorded in
        the Sent folder. An SMTP refusal is recorded and returned; the contact stays open."""
        try:
            result = await workflow.execute_activity_method(
                OutboundActivities.send_reply,
                SendReplyRequest(
                    contact_id=self._state.id,
                    policy=self._policy,
                    message_id=request.message_id,
                    to=request.to,
                ),
                start_to_close_timeout=policies.smtp_timeout(self._policy),
                retry_policy=policies.SMTP_RETRY,
                summary=f"reply to {request.to}",
            )
        except ActivityError as err:
            self._state.last_error = _cause(err)
            self._show()
            return self._state.last_error
        replies = self._state.replies
        if all(n.message_id != result.message_id for n in replies):  # the same text, sent once
            note = ReplyNote(message_id=result.message_id, to=request.to, at=workflow.now())
            replies = [*replies, note][-FOLLOW_UPS_SHOWN:]
        self._state.replies = replies
        self._state.last_error = None
        self._show()
        if request.close:
            await self._close()
        return None

    async def _pass_on_follow_ups(self) -> None:
        """Follow-ups of a contact in an agent's mailbox go there too; otherwise they wait
        with the contact (the built-in interface shows them) until it is closed."""
        if self._state.status is ContactStatus.DELIVERED and self._follow_ups:
            await self._deliver_follow_ups()

    async def _serve_queue(self) -> None:
        while True:
            await workflow.wait_condition(
                lambda: self._assignment is not None or bool(self._duplicates)
            )
            await self._settle_duplicates()
            request = self._assignment
            if request is None:
                continue
            self._state.agent = request.agent_id
            self._state.agent_email = request.agent_email
            self._state.last_error = None
            workflow.upsert_search_attributes([sa.AGENT.value_set(request.agent_id)])
            if request.agent_email is None:
                self._set_status(ContactStatus.ASSIGNED)
                await workflow.wait_condition(lambda: self._closed or bool(self._duplicates))
                await self._settle_duplicates()
                if self._closed:
                    return
                continue
            if await self._deliver(request, request.agent_email):
                return

    async def _deliver(self, request: AssignRequest, agent_email: str) -> bool:
        self._set_status(ContactStatus.DELIVERING)
        archived = await self._deliver_message(self._ref, request.agent_id, agent_email)
        if archived is None:
            self._state.agent = None
            self._state.agent_email = None
            self._assignment = None
            workflow.upsert_search_attributes([sa.AGENT.value_unset()])
            self._set_status(ContactStatus.QUEUED)
            return False
        self._ref = archived
        self._state.message = archived
        self._state.last_error = None
        self._set_status(ContactStatus.DELIVERED)
        return True

    async def _auto_reply(self, analysis: Analysis, routing: Routing | None) -> None:
        if self._channel is not Channel.EMAIL:
            self._note_auto_reply(f"not sent: a {self._channel.value} contact gets none")
            return
        decision = decide_auto_reply(self._policy, analysis, routing)
        if decision.to is None or decision.template is None:
            self._note_auto_reply(decision.reason)
            return
        try:
            reservation = await self._reserve(decision.to)
            if not reservation.allowed:
                self._note_auto_reply(reservation.reason)
                return
            result = await workflow.execute_activity_method(
                OutboundActivities.send_auto_reply,
                AutoReplyRequest(
                    contact_id=self._state.id,
                    contact_ref=self._state.reference,
                    ref=self._ref,
                    policy=self._policy,
                    to=decision.to,
                    subject=analysis.subject,
                    original_message_id=analysis.message_id,
                    original_references=analysis.references,
                    template=decision.template,
                    language=analysis.language,
                    queue=self._state.queue,
                    sender_name=analysis.sender.name if analysis.sender else "",
                ),
                start_to_close_timeout=policies.smtp_timeout(self._policy),
                schedule_to_close_timeout=policies.AUTO_REPLY_GIVE_UP,
                retry_policy=policies.SMTP_RETRY,
                summary="automatic reply",
            )
            outcome = f"sent to {decision.to} as {result.message_id}"
        except ActivityError as err:
            outcome = f"failed: {_cause(err)}"
        self._note_auto_reply(outcome)

    async def _reserve(self, to: str) -> ReserveReplyResult:
        if not self._rules_era:
            return ReserveReplyResult(allowed=True, reason="before the ledger")
        return await workflow.execute_activity_method(
            LedgerActivities.reserve_auto_reply,
            ReserveReplyRequest(
                account=self._policy.name,
                contact_id=self._state.id,
                sender=to,
                per_sender_period=timedelta(hours=self._policy.auto_reply_period_hours),
                cap_per_hour=self._policy.auto_reply_cap_per_hour,
            ),
            start_to_close_timeout=policies.LEDGER_TIMEOUT,
            schedule_to_close_timeout=policies.AUTO_REPLY_GIVE_UP,
            retry_policy=policies.LEDGER_RETRY,
            summary="reserve an automatic reply",
        )

    def _note_auto_reply(self, outcome: str) -> None:
        self._state.auto_reply = outcome
        self._show()

    async def _join_open_contact(self, analysis: Analysis) -> bool:
        """Join the open contact this email follows up, if there is one.

        A running contact is signalled and takes the email over. A contact delivered to an
        agent and ended gets this email delivered to the same agent from here. Automatic mail
        is archived and only recorded: it never changes a contact's state.
        """
        thread = [*analysis.references, *([analysis.in_reply_to] if analysis.in_reply_to else [])]
        if not (analysis.reference or thread):
            return False
        query = FollowUpQuery(
            account=self._policy.name,
            contact_id=self._state.id,
            sender=analysis.reply_address or "",
            reference=analysis.reference,
            message_ids=list(dict.fromkeys(thread)),
            within_days=self._policy.follow_up_days,
        )
        for _ in range(3):
            target = await workflow.execute_activity_method(
                FollowUpActivities.find_follow_up,
                query,
                start_to_close_timeout=policies.LEDGER_TIMEOUT,
                retry_policy=policies.LEDGER_RETRY,
                summary="look for the contact this follows up",
            )
            if target is None:
                return False
            if await self._hand_to(target, analysis):
                return True
        return False

    async def _hand_to(self, target: FollowUpTarget, analysis: Analysis) -> bool:
        if target.running:
            try:
                await workflow.get_external_workflow_handle(target.contact_id).signal(
                    ContactWorkflow.follow_up,
                    FollowUp(
                        contact_id=self._state.id,
                        ref=self._ref,
                        sender=self._state.sender,
                        subject=analysis.subject,
                        automatic=analysis.automatic,
                        received_at=self._state.received_at,
                    ),
                )
            except Exception:  # it ended since it was found: look again
                return False
            if analysis.automatic:
                await self._archive_own_message()
        elif analysis.automatic or target.agent_id is None or target.agent_email is None:
            await self._archive_own_message()
        else:
            delivered = await self._deliver_message(
                self._ref, target.agent_id, target.agent_email, contact_id=target.contact_id
            )
            if delivered is None:
                return False
        self._state.joined_to = target.contact_id
        self._state.agent = target.agent_id
        workflow.upsert_memo({"joined_to": target.contact_id})
        self._set_status(ContactStatus.JOINED)
        return True

    async def _archive_own_message(self) -> None:
        archived = await workflow.execute_activity_method(
            MailboxActivities.archive_message,
            ArchiveRequest(ref=self._ref, archive_folder=self._policy.archive_folder),
            start_to_close_timeout=policies.imap_timeout(self._policy),
            retry_policy=policies.IMAP_RETRY,
            summary="archive",
        )
        if archived is not None:
            self._ref = archived
            self._state.message = archived

    async def _deliver_follow_ups(self) -> None:
        """Follow-ups of a contact delivered to an agent's address go to that agent too.

        Called once the contact has left the queue. One closed in the built-in interface keeps
        its follow-ups where they are (recorded on it, their messages in processing)."""
        if self._state.status is not ContactStatus.DELIVERED:
            self._follow_ups.clear()
            return
        agent, email = self._state.agent, self._state.agent_email
        while self._follow_ups and agent and email:
            follow_up = self._follow_ups.pop(0)
            archived = await self._deliver_message(follow_up.ref, agent, email)
            if archived is None:
                continue
            self._delivered_follow_ups.append(follow_up.model_copy(update={"ref": archived}))
            self._mark_follow_ups({follow_up.contact_id}, delivered=True)

    async def _deliver_message(
        self, ref: MessageRef, agent_id: str, agent_email: str, *, contact_id: str | None = None
    ) -> MessageRef | None:
        """Resend one message to an agent and archive it; None (and last_error) if refused."""
        try:
            result = await workflow.execute_activity_method(
                OutboundActivities.deliver_to_agent,
                DeliverRequest(
                    contact_id=contact_id or self._state.id,
                    ref=ref,
                    policy=self._policy,
                    agent_id=agent_id,
                    agent_email=agent_email,
                    channel=self._channel,
                ),
                start_to_close_timeout=policies.smtp_timeout(self._policy),
                retry_policy=policies.SMTP_RETRY,
                summary=f"deliver to {agent_id}",
            )
        except ActivityError as err:
            self._state.last_error = _cause(err)
            return None
        return result.archived or ref

    async def _settle_duplicates(self) -> None:
        while self._duplicates:
            duplicate = self._duplicates.pop(0)
            if duplicate.folder == self._ref.folder and duplicate.uid == self._ref.uid:
                continue
            settled = await workflow.execute_activity_method(
                MailboxActivities.settle_duplicate,
                SettleDuplicateRequest(
                    duplicate=duplicate, archive_folder=self._policy.archive_folder
                ),
                start_to_close_timeout=policies.imap_timeout(self._policy),
                retry_policy=policies.IMAP_RETRY,
                summary="archive a duplicate copy",
            )
            if settled:
                self._state.duplicates_settled = self._state.duplicates_settled + 1

    async def _finish(self) -> ContactState:
        await self._settle_duplicates()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._deliver_follow_ups()
        await self._settle_duplicates()
        self._state.finished_at = workflow.now()
        return self._state

    def _take_analysis(self, analysis: Analysis, routing: Routing | None) -> None:
        state = self._state
        state.sender = str(analysis.sender) if analysis.sender else ""
        state.subject, state.language = analysis.subject, analysis.language
        state.automatic, state.automatic_reasons = analysis.automatic, analysis.automatic_reasons
        state.quarantine_reason = analysis.quarantine_reason
        state.message = self._ref
        work_item = self._work_item
        state.reply_to = work_item.reply_to if work_item is not None else analysis.reply_address
        attributes: list[SearchAttributeUpdate[Any]] = [
            sa.SENDER.value_set((analysis.reply_address or "").lower()[:200])
        ]
        if routing is not None:
            state.queue, state.priority, state.skills = (
                routing.queue,
                routing.priority,
                routing.skills,
            )
            state.category, state.rule = routing.category, routing.rule
            attributes += [
                sa.QUEUE.value_set(routing.queue),
                sa.PRIORITY.value_set(routing.priority),
            ]
            if routing.category:
                attributes.append(sa.CATEGORY.value_set(routing.category))
        if self._rules_era:
            workflow.upsert_search_attributes(attributes)

    def _set_status(self, status: ContactStatus) -> None:
        self._state.status = status
        workflow.upsert_search_attributes([sa.STATUS.value_set(status.value)])
        self._show()

    def _show(self) -> None:
        """The Web UI's current details: the state in words."""
        status = self._state.status
        expires = self._state.offer_expires_at
        words = _STATE_WORDS[status].format(
            queue=self._state.queue,
            agent=self._state.agent or "",
            agent_email=self._state.agent_email or "",
            quarantine_reason=self._state.quarantine_reason or "",
            joined_to=self._state.joined_to or "",
            offer_expires_at=f"{expires:%Y-%m-%d %H:%M:%S}" if expires else "",
        )
        if status is ContactStatus.QUEUED and self._state.waiting_for:
            until = self._state.waiting_until
            words = (
                f"Waiting for **{self._state.waiting_for}** in person"
                + (f" until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "")
                + f", then in queue **{self._state.queue}**."
            )
        detail = f"**{status.value}** · #{self._state.reference}\n\n{words}"
        if released := self._state.released:
            detail += (
                f"\n\nReleased from quarantine by {released.by} at "
                f"{released.at:%Y-%m-%d %H:%M:%S} UTC (it was: {released.reason})"
            )
        if self._state.auto_reply:
            detail += f"\n\nAutomatic reply: {self._state.auto_reply}"
        if self._state.last_error:
            detail += f"\n\nLast error: {self._state.last_error}"
        workflow.set_current_details(detail)


def _cause(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or err)

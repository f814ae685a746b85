"""ContactWorkflow: one email, one contact — claimed, analysed, acknowledged, queued, routed,
delivered, closed. Its id is business-keyed: `contact-<account>-<content key>`. The parts of
its life live beside it: `routed` (the phase machine), `follow_ups`, `auto_reply`,
`before_routing` (contacts begun before routing), `phases` (typed commands), `base` (state,
the Web UI's words, activity calls)."""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import suppress
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import ids, metrics
    from ace_email.contracts import search_attributes as sa
    from ace_email.contracts.base import Channel
    from ace_email.contracts.contact import (
        AssignRequest,
        AssignResult,
        BounceNote,
        CommandResult,
        ContactInput,
        ContactState,
        ContactStatus,
        FollowUp,
        FollowUpNote,
        ForwardRequest,
        OfferAnswer,
        OverflowNotice,
        ReplyRequest,
        RouteAnswer,
        RouteRequest,
        TransferRequest,
    )
    from ace_email.contracts.mail_work import (
        ClaimAnalysedRequest,
        ClaimRequest,
        ClaimResult,
    )
    from ace_email.contracts.mailbox import AccountPolicy
    from ace_email.contracts.message import Analysis, MessageRef, Routing
    from activities.mailbox import MailboxActivities
    from workflows import activity_options
    from workflows.contact.base import (
        FOLLOW_UPS_SHOWN,
        ROUTING_PATCH,
        RULES_PATCH,
        ContactRecord,
    )
    from workflows.contact.phases import (
        ASSIGNABLE,
        NOT_IN_QUEUE,
        OPEN,
        WAITING,
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
    from workflows.metrics import count
from workflows.contact.auto_reply import AutoReplies
from workflows.contact.before_routing import BeforeRouting
from workflows.contact.routed import RoutedLife


@workflow.defn
class ContactWorkflow(RoutedLife, BeforeRouting, AutoReplies):
    """A contact's whole life."""

    @workflow.init
    def __init__(self, contact: ContactInput) -> None:
        self._policy: AccountPolicy = contact.policy
        self._ref: MessageRef = contact.ref
        self._state = ContactRecord(
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
        self._phase: Phase | None = None
        self._round = 0
        self._entered_at: datetime | None = None
        self._agent: Agent | None = None
        self._accepted_route: tuple[str, int] | None = None
        self._deadline: datetime | None = None
        self._commands: deque[Command] = deque()
        self._bounce_note: BounceNote | None = None
        # Analysed by the poll (begun since ANALYSED_AT_POLL_PATCH, as its input shows): the
        # claim is a local activity that only moves the message, the start carried the search
        # attributes, and the routing, rules and ledger paths are taken without their patches.
        self._analysed_at_poll = contact.analysis is not None and contact.released is None

    @workflow.run
    async def run(self, contact: ContactInput) -> ContactState:
        if self._analysed_at_poll:
            claim = await self._claim_analysed(contact.analysis, contact.routing)
        else:
            claim = await self._imap(
                MailboxActivities.claim_message,
                ClaimRequest(
                    ref=self._ref,
                    policy=self._policy,
                    received_at=self._state.received_at,
                    released=contact.released is not None,
                ),
                "claim and analyse",
            )
        if claim.ref is None or claim.analysis is None:
            self._set_status(ContactStatus.MISSING)
            return await self._finish()
        self._ref = claim.ref
        if self._work_item is None:
            count(metrics.EMAILS_TAKEN_IN, account=self._policy.name)
        self._rules_era = self._analysed_at_poll or workflow.patched(RULES_PATCH)
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
        if analysis.bounce is not None and self._channel is Channel.EMAIL:
            self._read_report(analysis)
            await self._suppress_bounced()
        if (
            self._rules_era
            and self._channel is Channel.EMAIL
            and (await self._join_open_contact(analysis) or await self._file_report())
        ):
            return await self._finish()

        auto_reply = asyncio.create_task(self._auto_reply(analysis, routing))
        self._state.queued_at = workflow.now()
        if not self._analysed_at_poll:  # entering the queue sets it, once
            self._set_status(ContactStatus.QUEUED)
        if self._analysed_at_poll or workflow.patched(ROUTING_PATCH):
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
        if follow_up.bounce is not None and self._record_bounce(follow_up.bounce):
            self._commands.append(DeliveryBounced(follow_up.bounce))
        if not follow_up.automatic:
            self._follow_ups.append(follow_up)

    @workflow.signal
    def close(self) -> None:
        """Closes the contact (`close_contact` answers; this signal is for older scripts)."""
        if self._routing_era:
            self._commands.append(Close())
        else:
            self._closed = True

    @workflow.signal
    def overflow(self, notice: OverflowNotice) -> None:
        """The queue let this contact wait long enough: on to the overflow queue."""
        self._commands.append(Overflow(notice))

    @workflow.update
    async def assign(self, request: AssignRequest) -> AssignResult:
        """Give the contact to an agent directly, bypassing the queue's order; answers once
        delivered, or after a short wait."""
        if self._routing_era:
            result = await self._run_command(Assign(request))
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
                timeout=activity_options.ASSIGN_ANSWER_WAIT,
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
        self._commands.append(Route(request))
        return RouteAnswer(accepted=True)

    @workflow.update
    async def accept_offer(self, answer: OfferAnswer) -> CommandResult:
        return await self._run_command(Accept(answer))

    @accept_offer.validator
    def _validate_accept(self, answer: OfferAnswer) -> None:
        self._require_offer_to(answer.agent_id)

    @workflow.update
    async def decline_offer(self, answer: OfferAnswer) -> CommandResult:
        return await self._run_command(Decline(answer))

    @decline_offer.validator
    def _validate_decline(self, answer: OfferAnswer) -> None:
        self._require_offer_to(answer.agent_id)

    @workflow.update
    async def transfer(self, request: TransferRequest) -> CommandResult:
        """To another queue, or to one agent's personal waiting list."""
        return await self._run_command(Transfer(request))

    @transfer.validator
    def _validate_transfer(self, request: TransferRequest) -> None:
        self._require(OPEN, "only an open contact can be transferred")
        if (request.queue is None) == (request.agent_id is None):
            raise ValueError("transfer to a queue or to an agent, not both or neither")
        agent = self._agent
        if agent and agent.id == request.agent_id and self._phase is Phase.WITH_AGENT:
            raise ValueError(f"contact {self._state.id} is with {request.agent_id} already")

    @workflow.update
    async def requeue(self) -> CommandResult:
        """Back to its queue, in its old place."""
        return await self._run_command(Requeue())

    @requeue.validator
    def _validate_requeue(self) -> None:
        self._require(NOT_IN_QUEUE, "only a contact that has left its queue can be requeued")

    @workflow.update
    async def close_contact(self) -> CommandResult:
        """Done: the agent's place is freed and the message archived."""
        return await self._run_command(Close())

    @close_contact.validator
    def _validate_close(self) -> None:
        self._require(OPEN, "it is not open")

    @workflow.update
    async def reply(self, request: ReplyRequest) -> CommandResult:
        """Send a reply written in the built-in interface (waiting in the outbox)."""
        return await self._run_command(Reply(request))

    @reply.validator
    def _validate_reply(self, request: ReplyRequest) -> None:
        self._require((Phase.WITH_AGENT,), "only a contact an agent works on can be replied to")
        if self._state.status is not ContactStatus.ASSIGNED:
            raise ValueError(
                f"contact {self._state.id} is {self._state.status.value} to the agent's own "
                "mailbox; the agent replies from there"
            )
        if not request.to:
            raise ValueError(f"contact {self._state.id} has no address to reply to")

    @workflow.update
    async def forward(self, request: ForwardRequest) -> CommandResult:
        """Send the email on to an outside address: forwarded with a note, or redirected."""
        return await self._run_command(Forward(request))

    @forward.validator
    def _validate_forward(self, request: ForwardRequest) -> None:
        if self._channel is not Channel.EMAIL:
            raise ValueError(
                f"contact {self._state.id} is a {self._channel.value} contact; it never leaves "
                "the built-in interface, so it is neither delivered nor forwarded"
            )
        self._require(OPEN, "only an open contact can be forwarded or redirected")
        if not request.to or not request.message_id:
            raise ValueError(f"a {request.mode} of contact {self._state.id} needs an address")

    def _require(self, phases: tuple[Phase, ...], what: str) -> None:
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
        self._require((Phase.OFFERED,), "only an offered contact can be accepted or declined")
        if self._agent is None or self._agent.id != agent_id:
            offered = self._agent.id if self._agent else "nobody"
            raise ValueError(f"contact {self._state.id} is offered to {offered}, not {agent_id}")

    async def _run_command(self, command: Command) -> CommandResult:
        """Queue a command for the main loop; answer when it is done, or after a while. The
        loop checks it again when its turn comes: by then it may no longer apply."""
        self._commands.append(command)
        with suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: command.done, timeout=activity_options.ASSIGN_ANSWER_WAIT
            )
        if command.refusal is not None:
            raise ApplicationError(command.refusal, type="Refused", non_retryable=True)
        if isinstance(command.result, CommandResult):
            return command.result
        return CommandResult(
            contact_id=self._state.id,
            status=self._state.status,
            detail=f"still in progress: {self._describe_phase()}",
        )

    async def _finish(self) -> ContactState:
        await self._settle_duplicates()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._deliver_follow_ups()
        await self._settle_duplicates()
        self._state.finished_at = workflow.now()
        count(metrics.CONTACTS_CLOSED, status=self._state.status.value)
        return self._state

    async def _claim_analysed(
        self, analysis: Analysis | None, routing: Routing | None
    ) -> ClaimResult:
        """Move the message the poll analysed to processing, or to quarantine."""
        assert analysis is not None
        reason = analysis.quarantine_reason
        policy = self._policy
        moved = await workflow.execute_local_activity_method(
            MailboxActivities.claim_analysed,
            ClaimAnalysedRequest(
                ref=self._ref,
                target_folder=policy.quarantine_folder if reason else policy.processing_folder,
                quarantine_reason=reason,
            ),
            start_to_close_timeout=activity_options.imap_timeout(policy),
            retry_policy=activity_options.IMAP_RETRY,
            local_retry_threshold=activity_options.LOCAL_RETRY_THRESHOLD,
            summary="claim",
        )
        return ClaimResult(ref=moved, analysis=analysis, routing=routing)

    def _take_analysis(self, analysis: Analysis, routing: Routing | None) -> None:
        state = self._state
        state.sender = str(analysis.sender) if analysis.sender else ""
        state.subject, state.language = analysis.subject, analysis.language
        state.automatic, state.automatic_reasons = analysis.automatic, analysis.automatic_reasons
        state.quarantine_reason = analysis.quarantine_reason
        state.message = self._ref
        state.data, state.categories = dict(analysis.data), list(analysis.categories)
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
        if analysis.data:
            attributes.append(sa.DATA.value_set(sa.data_keywords(analysis.data)))
        if self._rules_era and not self._analysed_at_poll:  # else set at its start
            workflow.upsert_search_attributes(attributes)

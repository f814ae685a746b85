"""ContactWorkflow: one email, one contact — claimed, analysed, acknowledged, queued, delivered."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ace_email import ids
    from ace_email import search_attributes as sa
    from ace_email.auto_reply import decide_auto_reply
    from ace_email.models import (
        AccountPolicy,
        Analysis,
        ArchiveRequest,
        AssignRequest,
        AssignResult,
        AutoReplyRequest,
        ClaimRequest,
        ContactInput,
        ContactState,
        ContactStatus,
        DeliverRequest,
        FollowUp,
        FollowUpNote,
        FollowUpQuery,
        FollowUpTarget,
        MessageRef,
        ReserveReplyRequest,
        ReserveReplyResult,
        Routing,
        SettleDuplicateRequest,
    )
    from activities.auto_reply_ledger import LedgerActivities
    from activities.follow_ups import FollowUpActivities
    from activities.mailbox import MailboxActivities
    from activities.outbound import OutboundActivities
    from workflows import policies

FOLLOW_UPS_SHOWN = 50
# Contacts begun before rules, follow-ups and the reply ledger existed replay without them.
RULES_PATCH = "analysis-rules-follow-ups-ledger"

_STATE_WORDS = {
    ContactStatus.RECEIVED: "Received; being claimed and analysed.",
    ContactStatus.QUEUED: "Waiting in queue **{queue}** for an agent.",
    ContactStatus.DELIVERING: "Assigned to **{agent}**; delivering to the agent's address.",
    ContactStatus.ASSIGNED: "With **{agent}** in the built-in agent interface.",
    ContactStatus.DELIVERED: "Delivered to **{agent}** ({agent_email}); original archived.",
    ContactStatus.QUARANTINED: "Quarantined: {quarantine_reason}",
    ContactStatus.MISSING: "The message is no longer in the mailbox; nothing to do.",
    ContactStatus.JOINED: "A follow-up: joined contact **{joined_to}**.",
}


@workflow.defn
class ContactWorkflow:
    """A contact's whole life. Its id is business-keyed: `contact-<account>-<content key>`."""

    @workflow.init
    def __init__(self, contact: ContactInput) -> None:
        self._policy: AccountPolicy = contact.policy
        self._ref: MessageRef = contact.ref
        self._state = ContactState(
            id=workflow.info().workflow_id,
            status=ContactStatus.RECEIVED,
            account=contact.policy.name,
            queue=contact.policy.queue,
            reference=ids.contact_reference(contact.ref.key),
            message=contact.ref,
            received_at=workflow.now(),
        )
        self._assignment: AssignRequest | None = None
        self._duplicates: list[MessageRef] = []
        self._follow_ups: list[FollowUp] = []
        self._closed = False
        self._rules_era = False

    @workflow.run
    async def run(self, contact: ContactInput) -> ContactState:
        claim = await workflow.execute_activity_method(
            MailboxActivities.claim_message,
            ClaimRequest(ref=self._ref, policy=self._policy, received_at=self._state.received_at),
            start_to_close_timeout=policies.imap_timeout(self._policy),
            retry_policy=policies.IMAP_RETRY,
            summary="claim and analyse",
        )
        if claim.ref is None or claim.analysis is None:
            self._set_status(ContactStatus.MISSING)
            return await self._finish()
        self._ref = claim.ref
        self._rules_era = workflow.patched(RULES_PATCH)
        self._take_analysis(claim.analysis, claim.routing)
        if claim.analysis.quarantine_reason:
            self._set_status(ContactStatus.QUARANTINED)
            return await self._finish()
        if self._rules_era and await self._join_open_contact(claim.analysis):
            return await self._finish()

        auto_reply = asyncio.create_task(self._auto_reply(claim.analysis, claim.routing))
        self._state = self._state.model_copy(update={"queued_at": workflow.now()})
        self._set_status(ContactStatus.QUEUED)
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
        self._state = self._state.model_copy(update={"follow_ups": notes})
        if not follow_up.automatic:
            self._follow_ups.append(follow_up)

    @workflow.signal
    def close(self) -> None:
        """Closes a contact handled in the built-in interface."""
        self._closed = True

    @workflow.update
    async def assign(self, request: AssignRequest) -> AssignResult:
        """Give the contact to an agent; answers once delivered, or after a short wait."""
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
        if self._state.status is not ContactStatus.QUEUED or self._assignment is not None:
            raise ValueError(
                f"contact {self._state.id} is {self._state.status.value}; "
                "only a queued contact can be assigned"
            )
        if not request.agent_id.strip():
            raise ValueError("agent id is empty")
        if request.agent_email is not None and "@" not in request.agent_email:
            raise ValueError(f"agent {request.agent_id} has no valid email address")

    async def _serve_queue(self) -> None:
        while True:
            await workflow.wait_condition(
                lambda: self._assignment is not None or bool(self._duplicates)
            )
            await self._settle_duplicates()
            request = self._assignment
            if request is None:
                continue
            self._state = self._state.model_copy(
                update={
                    "agent": request.agent_id,
                    "agent_email": request.agent_email,
                    "last_error": None,
                }
            )
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
            self._state = self._state.model_copy(update={"agent": None, "agent_email": None})
            self._assignment = None
            workflow.upsert_search_attributes([sa.AGENT.value_unset()])
            self._set_status(ContactStatus.QUEUED)
            return False
        self._ref = archived
        self._state = self._state.model_copy(update={"message": archived, "last_error": None})
        self._set_status(ContactStatus.DELIVERED)
        return True

    async def _auto_reply(self, analysis: Analysis, routing: Routing | None) -> None:
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
        self._state = self._state.model_copy(update={"auto_reply": outcome})
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
        self._state = self._state.model_copy(
            update={"joined_to": target.contact_id, "agent": target.agent_id}
        )
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
            self._state = self._state.model_copy(update={"message": archived})

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
            if await self._deliver_message(follow_up.ref, agent, email) is None:
                continue
            notes = [
                n.model_copy(update={"delivered": True})
                if n.contact_id == follow_up.contact_id
                else n
                for n in self._state.follow_ups
            ]
            self._state = self._state.model_copy(update={"follow_ups": notes})

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
                ),
                start_to_close_timeout=policies.smtp_timeout(self._policy),
                retry_policy=policies.SMTP_RETRY,
                summary=f"deliver to {agent_id}",
            )
        except ActivityError as err:
            self._state = self._state.model_copy(update={"last_error": _cause(err)})
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
                self._state = self._state.model_copy(
                    update={"duplicates_settled": self._state.duplicates_settled + 1}
                )

    async def _finish(self) -> ContactState:
        await self._settle_duplicates()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._deliver_follow_ups()
        await self._settle_duplicates()
        self._state = self._state.model_copy(update={"finished_at": workflow.now()})
        return self._state

    def _take_analysis(self, analysis: Analysis, routing: Routing | None) -> None:
        update: dict[str, object] = {
            "sender": str(analysis.sender) if analysis.sender else "",
            "subject": analysis.subject,
            "language": analysis.language,
            "automatic": analysis.automatic,
            "automatic_reasons": analysis.automatic_reasons,
            "quarantine_reason": analysis.quarantine_reason,
            "message": self._ref,
        }
        attributes: list[SearchAttributeUpdate[Any]] = [
            sa.SENDER.value_set((analysis.reply_address or "").lower()[:200])
        ]
        if routing is not None:
            update |= {
                "queue": routing.queue,
                "priority": routing.priority,
                "skills": routing.skills,
                "category": routing.category,
                "rule": routing.rule,
            }
            attributes += [
                sa.QUEUE.value_set(routing.queue),
                sa.PRIORITY.value_set(routing.priority),
            ]
            if routing.category:
                attributes.append(sa.CATEGORY.value_set(routing.category))
        self._state = self._state.model_copy(update=update)
        if self._rules_era:
            workflow.upsert_search_attributes(attributes)

    def _set_status(self, status: ContactStatus) -> None:
        self._state = self._state.model_copy(update={"status": status})
        workflow.upsert_search_attributes([sa.STATUS.value_set(status.value)])
        self._show()

    def _show(self) -> None:
        """The Web UI's current details: the state in words."""
        status = self._state.status
        words = _STATE_WORDS[status].format(
            queue=self._state.queue,
            agent=self._state.agent or "",
            agent_email=self._state.agent_email or "",
            quarantine_reason=self._state.quarantine_reason or "",
            joined_to=self._state.joined_to or "",
        )
        detail = f"**{status.value}** · #{self._state.reference}\n\n{words}"
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

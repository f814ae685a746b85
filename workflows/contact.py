"""ContactWorkflow: one email, one contact — claimed, analysed, acknowledged, queued, delivered."""

from __future__ import annotations

import asyncio
from contextlib import suppress

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ace_email import ids
    from ace_email import search_attributes as sa
    from ace_email.auto_reply import decide_auto_reply
    from ace_email.models import (
        AccountPolicy,
        Analysis,
        AssignRequest,
        AssignResult,
        AutoReplyRequest,
        ClaimRequest,
        ContactInput,
        ContactState,
        ContactStatus,
        DeliverRequest,
        MessageRef,
        SettleDuplicateRequest,
    )
    from activities.mailbox import MailboxActivities
    from activities.outbound import OutboundActivities
    from workflows import policies

_STATE_WORDS = {
    ContactStatus.RECEIVED: "Received; being claimed and analysed.",
    ContactStatus.QUEUED: "Waiting in queue **{queue}** for an agent.",
    ContactStatus.DELIVERING: "Assigned to **{agent}**; delivering to the agent's address.",
    ContactStatus.ASSIGNED: "With **{agent}** in the built-in agent interface.",
    ContactStatus.DELIVERED: "Delivered to **{agent}** ({agent_email}); original archived.",
    ContactStatus.QUARANTINED: "Quarantined: {quarantine_reason}",
    ContactStatus.MISSING: "The message is no longer in the mailbox; nothing to do.",
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
        self._closed = False

    @workflow.run
    async def run(self, contact: ContactInput) -> ContactState:
        claim = await workflow.execute_activity_method(
            MailboxActivities.claim_message,
            ClaimRequest(ref=self._ref, policy=self._policy),
            start_to_close_timeout=policies.imap_timeout(self._policy),
            retry_policy=policies.IMAP_RETRY,
            summary="claim and analyse",
        )
        if claim.ref is None or claim.analysis is None:
            self._set_status(ContactStatus.MISSING)
            return await self._finish()
        self._ref = claim.ref
        self._take_analysis(claim.analysis)
        if claim.analysis.quarantine_reason:
            self._set_status(ContactStatus.QUARANTINED)
            return await self._finish()

        auto_reply = asyncio.create_task(self._auto_reply(claim.analysis))
        self._state = self._state.model_copy(update={"queued_at": workflow.now()})
        self._set_status(ContactStatus.QUEUED)
        await self._serve_queue()
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
        try:
            result = await workflow.execute_activity_method(
                OutboundActivities.deliver_to_agent,
                DeliverRequest(
                    contact_id=self._state.id,
                    ref=self._ref,
                    policy=self._policy,
                    agent_id=request.agent_id,
                    agent_email=agent_email,
                ),
                start_to_close_timeout=policies.smtp_timeout(self._policy),
                retry_policy=policies.SMTP_RETRY,
                summary=f"deliver to {request.agent_id}",
            )
        except ActivityError as err:
            self._state = self._state.model_copy(
                update={"agent": None, "agent_email": None, "last_error": _cause(err)}
            )
            self._assignment = None
            workflow.upsert_search_attributes([sa.AGENT.value_unset()])
            self._set_status(ContactStatus.QUEUED)
            return False
        if result.archived is not None:
            self._ref = result.archived
            self._state = self._state.model_copy(update={"message": result.archived})
        self._set_status(ContactStatus.DELIVERED)
        return True

    async def _auto_reply(self, analysis: Analysis) -> None:
        decision = decide_auto_reply(self._policy, analysis)
        if decision.to is None:
            self._state = self._state.model_copy(update={"auto_reply": decision.reason})
            return
        try:
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
                ),
                start_to_close_timeout=policies.smtp_timeout(self._policy),
                schedule_to_close_timeout=policies.AUTO_REPLY_GIVE_UP,
                retry_policy=policies.SMTP_RETRY,
                summary="automatic reply",
            )
            outcome = f"sent to {decision.to} as {result.message_id}"
        except ActivityError as err:
            outcome = f"failed: {_cause(err)}"
        self._state = self._state.model_copy(update={"auto_reply": outcome})

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
        await self._settle_duplicates()
        self._state = self._state.model_copy(update={"finished_at": workflow.now()})
        return self._state

    def _take_analysis(self, analysis: Analysis) -> None:
        self._state = self._state.model_copy(
            update={
                "sender": str(analysis.sender) if analysis.sender else "",
                "subject": analysis.subject,
                "automatic": analysis.automatic,
                "automatic_reasons": analysis.automatic_reasons,
                "quarantine_reason": analysis.quarantine_reason,
                "message": self._ref,
            }
        )

    def _set_status(self, status: ContactStatus) -> None:
        self._state = self._state.model_copy(update={"status": status})
        workflow.upsert_search_attributes([sa.STATUS.value_set(status.value)])
        words = _STATE_WORDS[status].format(
            queue=self._state.queue,
            agent=self._state.agent or "",
            agent_email=self._state.agent_email or "",
            quarantine_reason=self._state.quarantine_reason or "",
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

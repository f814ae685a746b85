"""The automatic reply of a contact: decided from its analysis, reserved with the account's
ledger (per sender and per hour), sent once (the Sent copy is the record), and noted. A
contact analysed at the poll has its reply activity reserve and send in one; older ones
reserve with an activity of its own first."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import metrics
    from ace_email.contracts.base import Channel
    from ace_email.contracts.ledger import ReserveReplyRequest, ReserveReplyResult
    from ace_email.contracts.mail_work import (
        AutoReplyRequest,
    )
    from ace_email.contracts.message import Analysis, Routing
    from ace_email.decisions.auto_reply import decide_auto_reply
    from activities.auto_reply_ledger import LedgerActivities
    from activities.outbound import OutboundActivities
    from workflows.contact.base import (
        ContactBase,
        failure,
    )
    from workflows.metrics import count


class AutoReplies(ContactBase):
    """The acknowledgement to the sender, beside the queueing."""

    async def _auto_reply(self, analysis: Analysis, routing: Routing | None) -> None:
        if self._channel is not Channel.EMAIL:
            self._note_auto_reply(f"not sent: a {self._channel.value} contact gets none")
            return
        decision = decide_auto_reply(self._policy, analysis, routing)
        if decision.to is None or decision.template is None:
            self._note_auto_reply(decision.reason)
            return
        reservation = self._reservation(decision.to)
        try:
            if not self._analysed_at_poll:  # the reply activity asks the ledger itself
                reserved = await self._reserve(reservation)
                if not reserved.allowed:
                    self._note_auto_reply(reserved.reason)
                    return
            result = await self._smtp(
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
                    data=analysis.data,
                    reservation=reservation if self._analysed_at_poll else None,
                ),
                "automatic reply",
                give_up=True,
            )
            outcome = result.refused or f"sent to {decision.to} as {result.message_id}"
        except ActivityError as err:
            outcome = f"failed: {failure(err)}"
        self._note_auto_reply(outcome)

    def _reservation(self, to: str) -> ReserveReplyRequest:
        return ReserveReplyRequest(
            account=self._policy.name,
            contact_id=self._state.id,
            sender=to,
            per_sender_period=timedelta(hours=self._policy.auto_reply_period_hours),
            cap_per_hour=self._policy.auto_reply_cap_per_hour,
        )

    async def _reserve(self, reservation: ReserveReplyRequest) -> ReserveReplyResult:
        if not self._rules_era:
            return ReserveReplyResult(allowed=True, reason="before the ledger")
        return await self._ledger(
            LedgerActivities.reserve_auto_reply,
            reservation,
            "reserve an automatic reply",
            give_up=True,
        )

    def _note_auto_reply(self, outcome: str) -> None:
        self._state.auto_reply = outcome
        self._update_details()
        account = self._policy.name
        if outcome.startswith("sent to "):
            count(metrics.AUTO_REPLIES_SENT, account=account)
        else:
            reason = metrics.suppressed_label(outcome)
            count(metrics.AUTO_REPLIES_SUPPRESSED, account=account, reason=reason)

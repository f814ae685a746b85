"""Sending a contact's email on to an outside address, as an agent or operator asks: a forward
(a new message with the agent's note, the original attached, waiting in the outbox) or a
redirect (the original resent unchanged). Each goes once and is recorded on the contact."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts.contact import ForwardNote, ForwardRequest
    from ace_email.contracts.mail_work import RedirectRequest, ReplyResult, SendReplyRequest
    from activities.outbound import OutboundActivities
    from workflows.contact.base import FOLLOW_UPS_SHOWN, ContactBase


class Forwarding(ContactBase):
    """Forward and redirect, for the contact's main loop."""

    async def _send_from_outbox(self, message_id: str, to: str, what: str) -> ReplyResult:
        """Send a message waiting in the outbox (a reply, a forward) and file it in Sent."""
        return await self._smtp(
            OutboundActivities.send_reply,
            SendReplyRequest(
                contact_id=self._state.id, policy=self._policy, message_id=message_id, to=to
            ),
            f"{what} to {to}",
        )

    async def _send_on(self, request: ForwardRequest) -> str | None:
        """Send the email on; an SMTP refusal is recorded and returned, the contact stays
        where it is."""
        try:
            result: ReplyResult
            if request.mode == "forward":
                result = await self._send_from_outbox(request.message_id, request.to, "forward")
            else:
                result = await self._smtp(
                    OutboundActivities.redirect_message,
                    RedirectRequest(
                        contact_id=self._state.id,
                        policy=self._policy,
                        ref=self._ref,
                        channel=self._channel,
                        to=request.to,
                        resent_message_id=request.message_id,
                    ),
                    f"redirect to {request.to}",
                )
        except ActivityError as err:
            return self._note_failure(err)
        forwards = self._state.forwards
        if all(f.message_id != result.message_id for f in forwards):  # the same request: once
            note = ForwardNote(
                message_id=result.message_id,
                to=request.to,
                mode=request.mode,
                by=request.by,
                at=workflow.now(),
            )
            forwards = [*forwards, note][-FOLLOW_UPS_SHOWN:]
        self._state.forwards = forwards
        self._state.last_error = None
        self._update_details()
        return None

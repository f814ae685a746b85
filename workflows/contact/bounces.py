"""Delivery reports on what the account sent: the report's own contact reads it, tells the
ledger of addresses that bounced hard, and hands it to the contact whose message it reports
on, which shows it; a bounce of a delivery to an agent's own mailbox is an operator alarm."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import ids, metrics
    from ace_email.contracts.contact import BounceNote, Undeliverable
    from ace_email.contracts.ledger import Suppression, SuppressRequest
    from ace_email.contracts.message import Analysis
    from activities.auto_reply_ledger import LedgerActivities
    from workflows.contact.base import ContactBase
    from workflows.metrics import count

BOUNCES_SHOWN = 10
# What went to the customer: a hard bounce of it means the customer's address is dead.
TO_CUSTOMER = ("autoreply", "reply")


class BounceReports(ContactBase):
    """Both sides of a delivery report: the report's contact and the contact it is about."""

    _bounce_note: BounceNote | None

    def _read_report(self, analysis: Analysis) -> None:
        """Note what a delivery report on one of the account's own messages says, and about
        which contact; a report on anything else is only shown."""
        bounce = analysis.bounce
        if bounce is None:
            return
        self._state.bounce = bounce
        own = ids.own_message(bounce.original_message_id or "", self._policy.name)
        if own is None or own[0] == self._state.id:
            return
        contact_id, sent_as = own
        self._state.bounce_of = contact_id
        self._bounce_note = BounceNote(
            contact_id=self._state.id,
            message_id=bounce.original_message_id or "",
            sent_as=sent_as,
            kind=bounce.kind,
            recipients=bounce.recipients,
            hard=bounce.hard,
            received_at=self._state.received_at,
        )
        count(
            metrics.DELIVERY_REPORTS, account=self._policy.name, kind=bounce.kind, sent_as=sent_as
        )

    async def _suppress_bounced(self) -> None:
        """A hard bounce of what went to a customer: no automatic reply to that address for
        the account's `bounce_suppress_days`; the ledger remembers it."""
        note = self._bounce_note
        days = self._policy.bounce_suppress_days
        if note is None or not note.hard or note.sent_as not in TO_CUSTOMER or days <= 0:
            return
        until = (self._state.received_at or workflow.now()) + timedelta(days=days)
        suppressions = [
            Suppression(
                address=recipient.address.lower(),
                until=until,
                reason=f"{recipient.describe()}, reported by contact {self._state.id}",
            )
            for recipient in note.recipients
            if recipient.hard and recipient.address
        ]
        if suppressions:
            await self._ledger(
                LedgerActivities.suppress_addresses,
                SuppressRequest(account=self._policy.name, suppressions=suppressions),
                "suppress automatic replies to an address that bounced hard",
            )

    def _record_bounce(self, note: BounceNote) -> bool:
        """Show a report on one of this contact's messages; True when it is the bounce of a
        delivery to the agent's own mailbox, which the main loop answers."""
        self._state.bounces = [*self._state.bounces, note][-BOUNCES_SHOWN:]
        if note.kind != "bounce":
            self._update_details()
            return False
        if note.sent_as in TO_CUSTOMER and note.hard:
            days = self._policy.bounce_suppress_days
            until = (note.received_at or workflow.now()) + timedelta(days=days)
            known = {u.address for u in self._state.undeliverable}
            self._state.undeliverable += [
                Undeliverable(
                    address=r.address.lower(),
                    until=until,
                    reason=f"{r.describe()}: {r.diagnostic}".rstrip(": "),
                )
                for r in note.recipients
                if r.hard and r.address and r.address.lower() not in known
            ]
        self._update_details()
        return note.sent_as == "delivery"

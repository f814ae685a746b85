"""What every part of a contact shares: its state, where it is, the Web UI's words for it, and
one helper per kind of activity call (IMAP, SMTP, routing, the reply ledger), so that each
kind's timeouts and retry policy are stated once."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ConfigDict
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import metrics
    from ace_email.contracts import search_attributes as sa
    from ace_email.contracts.base import Channel
    from ace_email.contracts.contact import (
        AssignRequest,
        ContactState,
        ContactStatus,
        FollowUp,
        WorkItem,
    )
    from ace_email.contracts.mailbox import AccountPolicy
    from ace_email.contracts.message import MessageRef
    from workflows import activity_options
    from workflows.contact.phases import Agent, Command, Phase
    from workflows.metrics import count

R = TypeVar("R")

FOLLOW_UPS_SHOWN = 50
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


class ContactRecord(ContactState):
    """The contact's state as its workflow keeps it: changed in place, handed out by the query
    and as the result as the ContactState it is."""

    model_config = ConfigDict(frozen=False)


def details(state: ContactState) -> str:
    """The Web UI's current details: the state in words."""
    status = state.status
    expires = state.offer_expires_at
    words = _STATE_WORDS[status].format(
        queue=state.queue,
        agent=state.agent or "",
        agent_email=state.agent_email or "",
        quarantine_reason=state.quarantine_reason or "",
        joined_to=state.joined_to or "",
        offer_expires_at=f"{expires:%Y-%m-%d %H:%M:%S}" if expires else "",
    )
    if status is ContactStatus.QUEUED and state.waiting_for:
        until = state.waiting_until
        words = (
            f"Waiting for **{state.waiting_for}** in person"
            + (f" until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "")
            + f", then in queue **{state.queue}**."
        )
    text = f"**{status.value}** · #{state.reference}\n\n{words}"
    if released := state.released:
        text += (
            f"\n\nReleased from quarantine by {released.by} at "
            f"{released.at:%Y-%m-%d %H:%M:%S} UTC (it was: {released.reason})"
        )
    if state.auto_reply:
        text += f"\n\nAutomatic reply: {state.auto_reply}"
    if state.data:
        text += "\n\nData: " + ", ".join(f"{k}={v}" for k, v in state.data.items())
    if state.bounce is not None:
        about = f" about contact {state.bounce_of}" if state.bounce_of else ""
        text += f"\n\nDelivery report{about}: {state.bounce.summary()}"
    for note in state.bounces[-3:]:
        listed = "; ".join(f"{r.address} {r.describe()}" for r in note.recipients[:3])
        text += f"\n\nIts {note.sent_as} got a {note.kind} report: {listed} ({note.contact_id})"
    for dead in state.undeliverable:
        text += f"\n\nUndeliverable: {dead.address} until {dead.until:%Y-%m-%d} ({dead.reason})"
    if state.last_error:
        text += f"\n\nLast error: {state.last_error}"
    return text


def failure(err: ActivityError) -> str:
    """What an activity's failure says, as a contact records it."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or err)


class ContactBase:
    """The state every part of the contact workflow reads and changes."""

    _policy: AccountPolicy
    _ref: MessageRef
    _state: ContactRecord
    _channel: Channel
    _work_item: WorkItem | None
    _arrived_at: datetime | None
    _assignment: AssignRequest | None
    _duplicates: list[MessageRef]
    _follow_ups: list[FollowUp]
    _delivered_follow_ups: list[FollowUp]
    _closed: bool
    _rules_era: bool
    _routing_era: bool
    _phase: Phase | None
    _round: int
    _entered_at: datetime | None
    _agent: Agent | None
    _accepted_route: tuple[str, int] | None
    _deadline: datetime | None
    _commands: deque[Command]
    _analysed_at_poll: bool

    def _set_status(self, status: ContactStatus) -> None:
        self._state.status = status
        workflow.upsert_search_attributes([sa.STATUS.value_set(status.value)])
        self._update_details()
        self._count_status(status)

    def _count_status(self, status: ContactStatus) -> None:
        if status is ContactStatus.QUARANTINED:
            reason = metrics.quarantine_label(self._state.quarantine_reason or "")
            count(metrics.EMAILS_QUARANTINED, account=self._policy.name, reason=reason)
        elif status is ContactStatus.DELIVERED:
            count(metrics.DELIVERIES, mode="external")
        elif status is ContactStatus.ASSIGNED:
            count(metrics.DELIVERIES, mode="built-in")

    def _update_details(self) -> None:
        workflow.set_current_details(details(self._state))

    def _note_failure(self, err: ActivityError) -> str:
        """An activity's failure as the contact's last error, shown and returned."""
        error = self._state.last_error = failure(err)
        self._update_details()
        return error

    async def _imap(self, activity: Callable[[Any, Any], R], request: object, summary: str) -> R:
        """An IMAP activity: retried for as long as it takes, bounded by the account's timeout."""
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=activity_options.imap_timeout(self._policy),
            retry_policy=activity_options.IMAP_RETRY,
            summary=summary,
        )

    async def _smtp(
        self,
        activity: Callable[[Any, Any], Awaitable[R]],
        request: object,
        summary: str,
        *,
        give_up: bool = False,
    ) -> R:
        """A send with its IMAP bookkeeping; `give_up` after a day (an automatic reply)."""
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=activity_options.smtp_timeout(self._policy),
            schedule_to_close_timeout=activity_options.AUTO_REPLY_GIVE_UP if give_up else None,
            retry_policy=activity_options.SMTP_RETRY,
            summary=summary,
        )

    async def _routing(
        self, activity: Callable[[Any, Any], Awaitable[R]], request: object, summary: str
    ) -> R:
        """A message to a queue or an agent, through an activity: a local one for a contact
        analysed at the poll (a call to Temporal of milliseconds, no task of its own)."""
        if self._analysed_at_poll:
            return await workflow.execute_local_activity_method(
                activity,
                request,
                start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
                retry_policy=activity_options.ROUTING_RETRY,
                local_retry_threshold=activity_options.LOCAL_RETRY_THRESHOLD,
                summary=summary,
            )
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=activity_options.ROUTING_TIMEOUT,
            retry_policy=activity_options.ROUTING_RETRY,
            summary=summary,
        )

    async def _ledger(
        self,
        activity: Callable[[Any, Any], Awaitable[R]],
        request: object,
        summary: str,
        *,
        give_up: bool = False,
    ) -> R:
        """A question to Temporal itself (the reply ledger, a follow-up's contact)."""
        return await workflow.execute_activity_method(
            activity,
            request,
            start_to_close_timeout=activity_options.LEDGER_TIMEOUT,
            schedule_to_close_timeout=activity_options.AUTO_REPLY_GIVE_UP if give_up else None,
            retry_policy=activity_options.LEDGER_RETRY,
            summary=summary,
        )

"""A contact: how it starts, what it shows, the follow-ups it gathers, and the commands
operators, agents and the router send it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from ace_email.contracts.base import Channel, Model
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Analysis, Bounce, BounceRecipient, MessageRef, Routing


class ContactStatus(StrEnum):
    """Where a contact is in its life; also the `AceStatus` search attribute."""

    RECEIVED = "received"
    QUEUED = "queued"
    DELIVERING = "delivering"
    ASSIGNED = "assigned"
    DELIVERED = "delivered"
    QUARANTINED = "quarantined"
    MISSING = "missing"
    JOINED = "joined"
    OFFERED = "offered"
    CLOSED = "closed"


class WorkItem(Model):
    """What a work item or social contact brings besides its document: where it waits and
    whom a reply goes to. Its text is a document in the account's work-item folder."""

    queue: str
    priority: int = 0
    skills: list[str] = []
    reply_to: str | None = None
    external_id: str | None = None


class QuarantineRelease(Model):
    """An operator let a quarantined email through: it becomes a contact like any other."""

    by: str = Field(description="who released it")
    at: datetime
    reason: str = Field(description="why it had been quarantined")


class ContactInput(Model):
    ref: MessageRef
    policy: AccountPolicy
    channel: Channel = Channel.EMAIL
    work_item: WorkItem | None = None
    arrived_at: datetime | None = Field(
        default=None, description="when the mail server received the email: its age counts"
    )
    released: QuarantineRelease | None = Field(
        default=None, description="set when an operator released the email from quarantine"
    )
    analysis: Analysis | None = Field(
        default=None,
        description="the poll's analysis: the claim only moves the message, by UID",
    )
    routing: Routing | None = None


class FollowUpQuery(Model):
    """What names an earlier contact: our own Message-IDs, a [#REF], the customer's thread."""

    account: str
    contact_id: str = Field(description="the asking contact itself, never its own target")
    sender: str
    reference: str | None = None
    message_ids: list[str] = []
    within_days: float = 30.0


class FollowUpTarget(Model):
    contact_id: str
    status: ContactStatus
    running: bool
    agent_id: str | None = None
    agent_email: str | None = None
    matched_by: str = ""


class BounceNote(Model):
    """A delivery report on a message a contact sent: its automatic reply, an agent's reply
    from the built-in interface, or the delivery to an agent's own mailbox."""

    contact_id: str = Field(description="the contact the report itself became")
    message_id: str = Field(description="the Message-ID of our message it reports on")
    sent_as: str = Field(description="autoreply, reply, delivery, forward or workitem")
    kind: str = Field(description="bounce, delay, feedback or delivered")
    recipients: list[BounceRecipient] = []
    hard: bool = False
    received_at: datetime | None = None


class Undeliverable(Model):
    """An address that bounced hard: no automatic reply goes to it until `until`."""

    address: str
    until: datetime
    reason: str


class FollowUp(Model):
    """Signal to an open contact: another email of its thread has arrived."""

    contact_id: str
    ref: MessageRef
    sender: str = ""
    subject: str = ""
    automatic: bool = False
    received_at: datetime | None = None
    bounce: BounceNote | None = Field(
        default=None, description="set when the email reports on a message this contact sent"
    )


class FollowUpNote(Model):
    """What a contact shows of one follow-up email."""

    contact_id: str
    subject: str = ""
    automatic: bool = False
    received_at: datetime | None = None
    delivered: bool = False


class AssignRequest(Model):
    agent_id: str
    agent_name: str = ""
    agent_email: str | None = None


class AssignResult(Model):
    contact_id: str
    status: ContactStatus
    agent_id: str
    detail: str = ""


class ReplyNote(Model):
    """A reply sent from the built-in interface."""

    message_id: str
    to: str
    at: datetime
    sent: bool = True


class ForwardNote(Model):
    """The contact's email sent on to an outside address: forwarded (a new message with the
    original attached and a note) or redirected (resent unchanged)."""

    message_id: str
    to: str
    mode: str = Field(description="forward or redirect")
    by: str = Field(default="", description="who asked for it")
    at: datetime
    sent: bool = True


class ContactState(Model):
    """What `starter.py status` and the Web UI show of a contact."""

    id: str
    status: ContactStatus
    account: str
    queue: str
    sender: str = Field(default="", alias="from")
    subject: str = ""
    reference: str = ""
    agent: str | None = None
    agent_email: str | None = None
    priority: int = 0
    skills: list[str] = []
    category: str | None = None
    rule: str | None = None
    language: str | None = None
    automatic: bool = False
    automatic_reasons: list[str] = []
    auto_reply: str = Field(default="", description="sent, or why not")
    follow_ups: list[FollowUpNote] = []
    joined_to: str | None = Field(default=None, description="the contact this email joined")
    quarantine_reason: str | None = None
    last_error: str | None = None
    message: MessageRef | None = None
    duplicates_settled: int = 0
    received_at: datetime | None = None
    queued_at: datetime | None = None
    finished_at: datetime | None = None
    channel: Channel = Channel.EMAIL
    reply_to: str | None = Field(default=None, description="where a reply to the customer goes")
    external_id: str | None = Field(default=None, description="a work item's id at its source")
    waiting_for: str | None = Field(
        default=None, description="the agent whose personal waiting list holds the contact"
    )
    waiting_until: datetime | None = None
    offer_expires_at: datetime | None = None
    round: int = Field(default=0, description="how often it has entered a waiting place")
    excluded_agents: list[str] = Field(default=[], description="not offered to these again")
    waiting_since: datetime | None = Field(default=None, description="orders it within a priority")
    entered_queue_at: datetime | None = Field(
        default=None, description="when it entered its present queue: escalation counts from it"
    )
    routed_by: str | None = Field(default=None, description="who gave it to its agent")
    routed_sequence: int | None = Field(
        default=None, description="the queue's running number of its routing decision"
    )
    assigned_at: datetime | None = None
    closed_at: datetime | None = None
    replies: list[ReplyNote] = []
    released: QuarantineRelease | None = None
    data: dict[str, str] = Field(default={}, description="values the account's patterns found")
    categories: list[str] = Field(default=[], description="keyword categories that matched")
    bounce: Bounce | None = Field(
        default=None, description="what this email reports, when it is a delivery report"
    )
    bounce_of: str | None = Field(
        default=None, description="the contact whose message this delivery report is about"
    )
    bounces: list[BounceNote] = Field(
        default=[], description="delivery reports on the messages this contact sent"
    )
    undeliverable: list[Undeliverable] = Field(
        default=[], description="the customer's addresses that bounced hard"
    )
    forwards: list[ForwardNote] = Field(
        default=[], description="forwards and redirects of its email to outside addresses"
    )


class RouteRequest(Model):
    """To a waiting contact: this agent takes you (if you still wait where you waited in
    `round`)."""

    agent_id: str
    agent_name: str = ""
    agent_email: str | None = None
    round: int
    source: str = ""
    sequence: int | None = None
    offer_timeout_seconds: float = 60.0


class RouteAnswer(Model):
    accepted: bool
    reason: str = ""


class OverflowNotice(Model):
    """From a queue to a contact that waited there too long: go to `to_queue`."""

    contact_id: str
    round: int
    from_queue: str
    to_queue: str


class OfferAnswer(Model):
    agent_id: str


class TransferRequest(Model):
    """To another queue, or to one agent's personal waiting list."""

    queue: str | None = None
    agent_id: str | None = None
    agent_name: str = ""
    agent_email: str | None = None
    personal_wait_seconds: float = 600.0
    offer_timeout_seconds: float = 60.0


class ReplyRequest(Model):
    """A reply composed in the built-in interface, waiting in the outbox by its Message-ID."""

    message_id: str
    to: str
    close: bool = False


class ForwardRequest(Model):
    """Send the contact's email on to an outside address. A forward's message (note and
    original attached) waits in the outbox by its Message-ID, as a reply does; a redirect is
    built from the original when it is sent."""

    mode: str = Field(pattern="^(forward|redirect)$")
    to: str
    message_id: str
    by: str = ""


class CommandResult(Model):
    contact_id: str
    status: ContactStatus
    detail: str = ""

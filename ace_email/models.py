"""Models that cross a boundary: workflow and activity inputs and results, queries, updates.

Nothing here ever holds a message body: workflows carry references (claim checks) to
messages that stay on the mail server, and small summaries of them.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SUMMARY_TEXT_LIMIT = 200
LIST_LIMIT = 50


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


class Channel(StrEnum):
    """How a contact reached us. Only email may ever be resent to an agent's own mailbox."""

    EMAIL = "email"
    WORKITEM = "workitem"
    SOCIAL = "social"


class Presence(StrEnum):
    """An agent's presence; also its `AceStatus` search attribute."""

    OFFLINE = "offline"
    READY = "ready"
    NOT_READY = "not-ready"


class Model(BaseModel):
    """What crosses into workflow history. Fields are only ever added, with defaults, and
    unknown ones are ignored, so old and new workers read each other's payloads during a
    rolling upgrade."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class MessageRef(Model):
    """A claim check: where a message lives on the account's IMAP server, and what it is."""

    account: str
    folder: str
    uidvalidity: int
    uid: int
    key: str = Field(description="content key: stable for the same email, distinct otherwise")
    message_id: str | None = None
    size: int = 0


class MessageHeadline(Model):
    """What the poller learns of a new message: its reference and a one-line summary."""

    ref: MessageRef
    sender: str = ""
    subject: str = ""
    arrived_at: datetime | None = Field(
        default=None, description="when the mail server received it (INTERNALDATE)"
    )


class Address(Model):
    name: str = ""
    addr: str = ""

    def __str__(self) -> str:
        return f"{self.name} <{self.addr}>" if self.name else self.addr


class Attachment(Model):
    filename: str | None = None
    content_type: str = "application/octet-stream"
    size: int = 0


class Analysis(Model):
    """A small summary of one email; never the body itself."""

    sender: Address | None = Field(default=None, alias="from")
    reply_to: list[Address] = []
    to: list[Address] = []
    cc: list[Address] = []
    recipients_total: int = 0
    subject: str = ""
    date: datetime | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = []
    size: int = 0
    content_type: str = ""
    attachments: list[Attachment] = []
    automatic: bool = False
    automatic_reasons: list[str] = []
    language: str | None = Field(default=None, description="ISO 639-1 code; None if unsure")
    spam: bool | None = Field(default=None, description="a spam header's verdict, if any")
    spam_detail: str | None = None
    reference: str | None = Field(
        default=None, description="a contact reference [#REF] in the subject"
    )
    rule: str | None = Field(default=None, description="the rule that matched, or 'default'")
    category: str | None = None
    problems: list[str] = []
    quarantine_reason: str | None = None

    @property
    def reply_address(self) -> str | None:
        """Where a reply to the sender goes: Reply-To, else From."""
        for address in [*self.reply_to, *([self.sender] if self.sender else [])]:
            if address.addr:
                return address.addr
        return None


class Routing(Model):
    """What the account's rules made of one email: the first matching rule's actions."""

    rule: str = Field(default="default", description="the rule's name, or 'default'")
    queue: str
    priority: int = 0
    skills: list[str] = []
    category: str | None = None
    auto_reply_template: str | None = Field(
        default=None, description="template of the automatic reply; None: no automatic reply"
    )
    quarantine_reason: str | None = None


class AccountPolicy(Model):
    """The non-secret part of an account's configuration that workflows act on.

    Connection details and secrets stay in each worker's own configuration.
    """

    name: str
    address: str
    return_address: str
    queue: str
    auto_reply: bool = True
    poll_interval_seconds: float = 30.0
    inbox_folder: str = "INBOX"
    processing_folder: str = "Processing"
    archive_folder: str = "Archive"
    quarantine_folder: str = "Quarantine"
    sent_folder: str = "Sent"
    workitem_folder: str = "WorkItems"
    outbox_folder: str = "Outbox"
    max_message_bytes: int = 40 * 1024 * 1024
    imap_timeout_seconds: float = 30.0
    smtp_timeout_seconds: float = 60.0
    own_addresses: list[str] = Field(
        default=[], description="addresses that never get an automatic reply (loop guard)"
    )
    auto_reply_period_hours: float = Field(
        default=24.0, description="at most one automatic reply per sender in this period"
    )
    auto_reply_cap_per_hour: int = 100
    follow_up_days: float = Field(
        default=30.0, description="a delivered contact takes follow-ups for this long"
    )


def policy_digest(policy: BaseModel) -> str:
    """A short fingerprint of a policy (an account's, a queue's, an agent's): the registry
    compares it to the running workflow's memo to reconfigure."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]


class MailboxCursor(Model):
    """How far a mailbox has been read: UIDs are only comparable within one UIDVALIDITY."""

    uidvalidity: int = 0
    last_uid: int = 0


class MailboxInput(Model):
    policy: AccountPolicy
    cursor: MailboxCursor = MailboxCursor()
    polls: int = 0
    contacts_started: int = 0


class PollRequest(Model):
    account: str
    folder: str
    cursor: MailboxCursor
    max_messages: int = 100
    max_bytes: int = 200 * 1024 * 1024


class PollResult(Model):
    cursor: MailboxCursor
    messages: list[MessageHeadline] = []
    more: bool = False
    waiting: int = 0
    oldest_waiting_at: datetime | None = Field(
        default=None, description="arrival (INTERNALDATE) of the lowest UID waiting in the inbox"
    )
    connection: dict[str, str] = Field(
        default={}, description="the worker's IMAP and SMTP endpoints for the account, no secret"
    )


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


class ClaimRequest(Model):
    ref: MessageRef
    policy: AccountPolicy
    received_at: datetime | None = Field(
        default=None, description="when the contact began: the clock that time rules read"
    )
    released: bool = Field(
        default=False,
        description="from quarantine, by an operator: neither analysis nor "
        "rules quarantine it again",
    )


class ClaimResult(Model):
    ref: MessageRef | None = Field(description="where the message is now; None if it vanished")
    analysis: Analysis | None = None
    routing: Routing | None = None


class ArchiveRequest(Model):
    ref: MessageRef
    archive_folder: str


class MoveRequest(Model):
    ref: MessageRef
    folder: str


class SettleDuplicateRequest(Model):
    duplicate: MessageRef
    archive_folder: str


class AutoReplyRequest(Model):
    contact_id: str
    contact_ref: str
    ref: MessageRef
    policy: AccountPolicy
    to: str
    subject: str
    original_message_id: str | None = None
    original_references: list[str] = []
    template: str = "default"
    language: str | None = None
    queue: str = ""
    sender_name: str = ""


class AutoReplyResult(Model):
    message_id: str
    sent: bool = Field(description="False when the Sent folder already held it")


class DeliverRequest(Model):
    contact_id: str
    ref: MessageRef
    policy: AccountPolicy
    agent_id: str
    agent_email: str
    channel: Channel = Channel.EMAIL


class DeliverResult(Model):
    resent_message_id: str
    archived: MessageRef | None = None
    already_delivered: bool = False


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


class FollowUp(Model):
    """Signal to an open contact: another email of its thread has arrived."""

    contact_id: str
    ref: MessageRef
    sender: str = ""
    subject: str = ""
    automatic: bool = False
    received_at: datetime | None = None


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


class MailboxHealth(StrEnum):
    """A poll loop's health; also the `AceMailboxHealth` search attribute."""

    OK = "ok"
    FAILING = "failing"


class MailboxStatus(Model):
    """What `starter.py accounts` and the Web UI show of a mailbox's poll loop."""

    account: str
    cursor: MailboxCursor
    polls: int = 0
    contacts_started: int = 0
    duplicates_seen: int = 0
    waiting: int = 0
    oldest_waiting_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    failures: int = Field(default=0, description="polls failed in a row")
    failing_since: datetime | None = None
    next_poll_at: datetime | None = None
    stopping: bool = False
    connection: dict[str, str] = Field(
        default={}, description="the endpoints the last successful poll's worker uses"
    )

    @property
    def health(self) -> MailboxHealth | None:
        if self.last_error is not None:
            return MailboxHealth.FAILING
        return MailboxHealth.OK if self.last_success_at is not None else None

    def lag(self, now: datetime) -> timedelta | None:
        """The longest an email may have been in the inbox without becoming a contact.

        From the arrival of the oldest email still waiting at the last successful poll, or from
        that poll itself when none was waiting (mail that arrived since is not seen yet).
        None before the first successful poll.
        """
        if self.last_success_at is None:
            return None
        since = self.last_success_at
        if self.waiting and self.oldest_waiting_at is not None:
            since = min(since, self.oldest_waiting_at)
        return max(now - since, timedelta(0))


class LedgerEntry(Model):
    """One automatic reply reserved: for the per-sender and per-hour limits."""

    contact_id: str
    sender: str
    at: datetime
    keep_for: timedelta


class LedgerInput(Model):
    account: str
    entries: list[LedgerEntry] = []
    updates_per_run: int = Field(default=1000, description="continue-as-new after this many")


class ReserveReplyRequest(Model):
    account: str
    contact_id: str
    sender: str
    per_sender_period: timedelta = timedelta(hours=24)
    cap_per_hour: int = 100


class ReserveReplyResult(Model):
    allowed: bool
    reason: str


# Routing: queues, agents and the messages between them and their contacts.


class QueuePolicy(Model):
    """A queue's routing rules: escalation and overflow."""

    name: str
    escalate_after_seconds: float | None = Field(
        default=None, description="every this long waiting, the priority rises by the step"
    )
    escalate_step: int = 1
    escalate_max: int | None = Field(default=None, description="escalation stops here")
    overflow_after_seconds: float | None = None
    overflow_to: str | None = None


class AgentPolicy(Model):
    """An agent as routing sees it: what they can take, how much, from where."""

    id: str
    name: str = ""
    email: str | None = Field(default=None, description="none: works in the built-in interface")
    capacity: int = 1
    channel_capacity: dict[Channel, int] = Field(
        default={}, description="at most this many contacts of a channel at once"
    )
    skills: list[str] = []
    queues: list[str] = []


class Waiting(Model):
    """One contact waiting in a queue: enough to order it and to match it to an agent."""

    contact_id: str
    round: int
    priority: int = 0
    waiting_since: datetime = Field(description="orders it within a priority: the oldest first")
    entered_at: datetime = Field(description="in this queue; escalation and overflow count from it")
    skills: list[str] = []
    channel: Channel = Channel.EMAIL
    excluded: list[str] = Field(default=[], description="agents it is not offered to again")


class WaitingBatch(Model):
    """Contacts that enter one queue together (one signal for many)."""

    entries: list[Waiting]


class Withdrawal(Model):
    """A contact leaves the waiting place it entered in `round`."""

    contact_id: str
    round: int


class AgentView(Model):
    """What a queue knows of an agent; `seq` orders the views one agent sends."""

    agent_id: str
    seq: int = 0
    ready: bool = False
    free: int = 0
    free_by_channel: dict[Channel, int] = Field(
        default={}, description="free places of the channels with their own limit"
    )
    skills: list[str] = []
    queues: list[str] = []
    idle_since: datetime | None = None


class QueueInput(Model):
    policy: QueuePolicy
    waiting: list[Waiting] = []
    waiting_packed: str = Field(
        default="",
        description="more waiting contacts, packed (see pack_waiting): a queue carries tens "
        "of thousands through continue-as-new within one payload",
    )
    agents: list[AgentView] = []
    agents_known: bool = False
    routed: int = 0
    decided: int = Field(default=0, description="routing decisions made: their running number")
    overflowed: int = 0
    events_per_run: int = Field(
        default=0, description="continue-as-new after this many history events; 0: when suggested"
    )


_WAITING_LIST = TypeAdapter(list[Waiting])


def pack_waiting(entries: list[Waiting]) -> str:
    """Waiting contacts as compressed JSON in base64: about a quarter of their plain size."""
    return base64.b64encode(zlib.compress(_WAITING_LIST.dump_json(entries), 6)).decode()


def unpack_waiting(packed: str) -> list[Waiting]:
    if not packed:
        return []
    return _WAITING_LIST.validate_json(zlib.decompress(base64.b64decode(packed)))


class QueuedContact(Model):
    contact_id: str
    priority: int
    effective_priority: int
    waiting_since: datetime
    entered_at: datetime
    skills: list[str] = []
    channel: Channel = Channel.EMAIL


class QueueStatus(Model):
    """What `starter.py queues` and the Web UI show of a queue."""

    queue: str
    waiting: int = 0
    oldest_waiting_since: datetime | None = None
    routed: int = Field(default=0, description="contacts given to agents since the queue began")
    overflowed: int = 0
    agents_ready: int = 0
    agents_free: int = Field(default=0, description="ready agents with a free place")
    head: list[QueuedContact] = Field(default=[], description="the first waiting, in order")


class RouteOrder(Model):
    """One routing decision: give `contact_id` (waiting in `round`) to `agent_id`."""

    contact_id: str
    agent_id: str
    round: int
    channel: Channel = Channel.EMAIL
    skills: list[str] = []
    queue: str
    sequence: int = 0
    reserve: bool = Field(
        default=True, description="reserve a place with the agent first; False: it is reserved"
    )


class DispatchBatch(Model):
    source: str
    orders: list[RouteOrder]


class DispatchOutcome(StrEnum):
    ROUTED = "routed"
    AGENT_BUSY = "agent-busy"
    STALE = "stale"


class DispatchResult(Model):
    contact_id: str
    agent_id: str
    outcome: DispatchOutcome
    view: AgentView | None = None
    detail: str = ""


class Reservation(Model):
    """A place with an agent for one contact. `force`: an operator's direct assignment, taken
    whatever the agent's presence and load."""

    contact_id: str
    channel: Channel = Channel.EMAIL
    queue: str = ""
    skills: list[str] = []
    force: bool = False


class ReservationAnswer(Model):
    granted: bool
    reason: str = ""
    view: AgentView


class Release(Model):
    contact_id: str


class PersonalWait(Model):
    """A contact waiting in one agent's personal waiting list."""

    contact_id: str
    round: int
    channel: Channel = Channel.EMAIL
    queue: str = ""
    skills: list[str] = []
    since: datetime
    until: datetime


class Held(Model):
    """A contact that occupies a place of an agent's capacity, from reservation to close."""

    contact_id: str
    channel: Channel = Channel.EMAIL
    queue: str = ""
    since: datetime
    forced: bool = False


class AgentInput(Model):
    policy: AgentPolicy
    presence: Presence = Presence.OFFLINE
    presence_since: datetime | None = None
    idle_since: datetime | None = None
    held: list[Held] = []
    personal: list[PersonalWait] = []
    seq: int = 0
    max_load: int = 0
    contacts_taken: int = 0
    reconcile_every_seconds: float = Field(
        default=300.0, description="how often it checks that the contacts it holds are open"
    )


class PresenceRequest(Model):
    presence: Presence


class AgentStatus(Model):
    """What `starter.py agents` and the Web UI show of an agent."""

    id: str
    name: str = ""
    email: str | None = None
    presence: Presence = Presence.OFFLINE
    presence_since: datetime | None = None
    idle_since: datetime | None = None
    capacity: int = 1
    channel_capacity: dict[Channel, int] = {}
    load: int = 0
    load_by_channel: dict[Channel, int] = {}
    max_load: int = Field(default=0, description="the most contacts held at once")
    contacts_taken: int = 0
    skills: list[str] = []
    queues: list[str] = []
    held: list[Held] = []
    personal: list[PersonalWait] = []


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


class SendReplyRequest(Model):
    contact_id: str
    policy: AccountPolicy
    message_id: str
    to: str


class ReplyResult(Model):
    message_id: str
    sent: bool = Field(description="False when the Sent folder already held it")


class CommandResult(Model):
    contact_id: str
    status: ContactStatus
    detail: str = ""


class HeldCheck(Model):
    agent_id: str
    contact_ids: list[str]

"""Models that cross a boundary: workflow and activity inputs and results, queries, updates.

Nothing here ever holds a message body: workflows carry references (claim checks) to
messages that stay on the mail server, and small summaries of them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

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


def policy_digest(policy: AccountPolicy) -> str:
    """A short fingerprint of an account's policy: the registry compares it to reconfigure."""
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


class ContactInput(Model):
    ref: MessageRef
    policy: AccountPolicy


class ClaimRequest(Model):
    ref: MessageRef
    policy: AccountPolicy
    received_at: datetime | None = Field(
        default=None, description="when the contact began: the clock that time rules read"
    )


class ClaimResult(Model):
    ref: MessageRef | None = Field(description="where the message is now; None if it vanished")
    analysis: Analysis | None = None
    routing: Routing | None = None


class ArchiveRequest(Model):
    ref: MessageRef
    archive_folder: str


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

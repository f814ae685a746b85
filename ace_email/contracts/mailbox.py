"""An account's poll loop: the account snapshot its workflows act on, the cursor, a poll's
request and result, and the mailbox's health."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import Field

from ace_email.contracts.base import Model
from ace_email.contracts.message import MessageHeadline


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
    idle: bool = Field(default=True, description="push by IMAP IDLE where the server offers it")
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
    bounce_suppress_days: float = Field(
        default=30.0, description="an address that bounced hard gets no automatic reply this long"
    )
    max_waiting: int | None = Field(
        default=None, description="intake pauses while this many of the account's contacts wait"
    )
    max_per_sender_per_hour: int | None = Field(
        default=None, description="beyond this many emails an hour, a sender's go to flood_queue"
    )
    max_per_domain_per_hour: int | None = Field(
        default=None, description="beyond this many an hour, a sender domain's go to flood_queue"
    )
    flood_queue: str | None = None


class WaitingCount(Model):
    """How many of an account's contacts wait (received, queued, offered), by visibility."""

    account: str


class WatchRequest(Model):
    """Watch an inbox by IMAP IDLE and ask its poll loop to poll when mail arrives."""

    account: str
    folder: str
    watch_seconds: float = Field(
        default=25 * 60, description="then the watch ends and its loop starts a new one"
    )


class WatchResult(Model):
    offered: bool = Field(description="False: the server does not offer IDLE")
    news: int = Field(default=0, description="how often new mail was told of")


class MailboxCursor(Model):
    """How far a mailbox has been read: UIDs are only comparable within one UIDVALIDITY."""

    uidvalidity: int = 0
    last_uid: int = 0


class RecentEmail(Model):
    """One email taken in within the hour: who sent it, when (the flood limits count these)."""

    sender: str
    at: datetime


class MailboxInput(Model):
    policy: AccountPolicy
    cursor: MailboxCursor = MailboxCursor()
    polls: int = 0
    contacts_started: int = 0
    recent: list[RecentEmail] = Field(
        default=[], description="the last hour's emails by sender, for the flood limits"
    )


class PollRequest(Model):
    account: str
    folder: str
    cursor: MailboxCursor
    max_messages: int = 100
    max_bytes: int = 200 * 1024 * 1024
    analyse: bool = Field(
        default=False,
        description="analyse and route each message as it is read, for its contact to take",
    )


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


class MailboxHealth(StrEnum):
    """A poll loop's health; also the `AceMailboxHealth` search attribute."""

    OK = "ok"
    FAILING = "failing"
    THROTTLED = "throttled"


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
    push: str | None = Field(
        default=None,
        description="'IMAP IDLE' while the inbox is watched; else why not (None: polling only)",
    )

    throttled: str | None = Field(
        default=None, description="why intake pauses: too many of the account's contacts wait"
    )
    diverted: int = Field(default=0, description="emails sent to the flood queue")

    @property
    def health(self) -> MailboxHealth | None:
        if self.last_error is not None:
            return MailboxHealth.FAILING
        if self.throttled is not None:
            return MailboxHealth.THROTTLED
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

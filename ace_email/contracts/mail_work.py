"""The mail server work a contact asks of its activities: claim, move, archive and settle
messages; send the automatic reply, deliver to an agent, send a built-in reply."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ace_email.contracts.base import Channel, Model
from ace_email.contracts.ledger import ReserveReplyRequest
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Analysis, MessageRef, Routing


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


class ClaimAnalysedRequest(Model):
    """Claim a message the poll analysed already: move it, by UID, out of the inbox."""

    ref: MessageRef
    target_folder: str = Field(description="processing, or quarantine")
    quarantine_reason: str | None = None


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
    data: dict[str, str] = Field(
        default={}, description="the contact's extracted data, for {{ data.NAME }} in templates"
    )
    reservation: ReserveReplyRequest | None = Field(
        default=None, description="asked of the account's reply ledger before sending"
    )


class AutoReplyResult(Model):
    message_id: str
    sent: bool = Field(description="False when the Sent folder already held it, or refused")
    refused: str | None = Field(default=None, description="why the ledger refused it")


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


class SendReplyRequest(Model):
    contact_id: str
    policy: AccountPolicy
    message_id: str
    to: str


class RedirectRequest(Model):
    """Resend a contact's email unchanged to an outside address, under Resent-* fields."""

    contact_id: str
    policy: AccountPolicy
    ref: MessageRef
    channel: Channel = Channel.EMAIL
    to: str
    resent_message_id: str


class ReplyResult(Model):
    message_id: str
    sent: bool = Field(description="False when the Sent folder already held it")

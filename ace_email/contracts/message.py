"""An email as workflows know it: where it is (a claim check), its headline, the summary its
analysis makes, and the route the account's rules choose for it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ace_email.contracts.base import Model


class MessageRef(Model):
    """A claim check: where a message lives on the account's IMAP server, and what it is."""

    account: str
    folder: str
    uidvalidity: int
    uid: int
    key: str = Field(description="content key: stable for the same email, distinct otherwise")
    message_id: str | None = None
    size: int = 0


class Address(Model):
    name: str = ""
    addr: str = ""

    def __str__(self) -> str:
        return f"{self.name} <{self.addr}>" if self.name else self.addr


class Attachment(Model):
    filename: str | None = None
    content_type: str = "application/octet-stream"
    size: int = 0


BounceKind = Literal["bounce", "delay", "feedback", "delivered"]


class BounceRecipient(Model):
    """One recipient of a delivery-status or feedback report, and what became of it."""

    address: str = ""
    status: str | None = Field(default=None, description='RFC 3463 status, e.g. "5.1.1"')
    reply_code: int | None = Field(default=None, description="SMTP reply code, e.g. 550")
    reason: str = Field(
        default="undefined",
        description="Sisimai's reason vocabulary: userunknown, mailboxfull, ..., undefined; "
        "feedback for an ARF report, delivered for a success notice",
    )
    hard: bool = Field(default=False, description="retrying this address cannot help")
    diagnostic: str = Field(default="", description="the server's words, one line, bounded")

    def describe(self) -> str:
        """E.g. "hard bounce 5.1.1 userunknown"."""
        kind = "hard bounce" if self.hard else "soft bounce"
        return " ".join(part for part in (kind, self.status, self.reason) if part)


class Bounce(Model):
    """What a delivery-status notification, a bounce or a feedback report says."""

    kind: BounceKind
    original_message_id: str | None = Field(
        default=None, description="the Message-ID of the message it reports on, if named"
    )
    recipients: list[BounceRecipient] = []
    feedback_type: str | None = Field(default=None, description="an ARF report's type: abuse, ...")
    reporting_mta: str | None = None

    @property
    def hard(self) -> bool:
        """Some recipient can never be reached at this address."""
        return self.kind == "bounce" and any(r.hard for r in self.recipients)

    def summary(self) -> str:
        """One line for people: "bounce: a@b.example hard bounce 5.1.1 userunknown"."""
        shown = self.recipients[:3]
        listed = "; ".join(
            f"{r.address} {r.describe() if self.kind == 'bounce' else r.reason}" for r in shown
        )
        more = f" (+{len(self.recipients) - 3} more)" if len(self.recipients) > 3 else ""
        return f"{self.kind}: {listed or 'no recipient named'}{more}"


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
    bounce: Bounce | None = Field(
        default=None, description="what a bounce, delay, success or feedback report says"
    )
    data: dict[str, str] = Field(
        default={}, description="values the account's patterns extracted: order_id, ..."
    )
    categories: list[str] = Field(default=[], description="keyword categories that matched")
    matched_words: dict[str, list[str]] = Field(
        default={}, description="per category, the words that made it match"
    )
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


class MessageHeadline(Model):
    """What the poller learns of a new message: its reference and a one-line summary."""

    ref: MessageRef
    sender: str = ""
    subject: str = ""
    arrived_at: datetime | None = Field(
        default=None, description="when the mail server received it (INTERNALDATE)"
    )
    analysis: Analysis | None = Field(
        default=None, description="the poll's analysis, when it analysed the message"
    )
    routing: Routing | None = None

"""Whether an email gets an automatic reply: a pure decision with its reason.

The per-sender and per-hour limits are the ledger's to decide (they need memory); everything
that can be told from the email, its analysis and the account alone is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ace_email.compose import build_auto_reply
from ace_email.contracts.mailbox import AccountPolicy
from ace_email.contracts.message import Analysis, Routing
from ace_email.settings import AccountSettings
from ace_email.templates import ReplyContext, TemplateSettings, render, template_named


@dataclass(frozen=True)
class AutoReplyDecision:
    to: str | None
    reason: str
    template: str | None = None

    @property
    def send(self) -> bool:
        return self.to is not None


def decide_auto_reply(
    policy: AccountPolicy, analysis: Analysis, routing: Routing | None = None
) -> AutoReplyDecision:
    """Never to automatic mail, spam or our own addresses; only where enabled and a template
    is chosen."""
    if not policy.auto_reply:
        return AutoReplyDecision(None, "not sent: automatic replies are off for this account")
    if analysis.automatic:
        reasons = "; ".join(analysis.automatic_reasons[:3]) or "automatic mail"
        return AutoReplyDecision(None, f"not sent: automatic mail ({reasons})")
    if analysis.spam:
        return AutoReplyDecision(None, f"not sent: spam ({analysis.spam_detail or 'flagged'})")
    template = routing.auto_reply_template if routing is not None else "default"
    if template is None:
        rule = routing.rule if routing is not None else "default"
        return AutoReplyDecision(None, f"not sent: rule '{rule}' sends no automatic reply")
    to = analysis.reply_address
    if not to:
        return AutoReplyDecision(None, "not sent: the email names no sender address")
    if any(c.isspace() or ord(c) < 32 for c in to) or to.count("@") != 1:
        return AutoReplyDecision(None, f"not sent: {to!r} is not a usable address")
    own = {a.lower() for a in (*policy.own_addresses, policy.address, policy.return_address)}
    if to.lower() in own:
        return AutoReplyDecision(None, "not sent: the sender is one of our own addresses")
    return AutoReplyDecision(to, "to be sent", template)


@dataclass(frozen=True)
class ReplyParts:
    """What an automatic reply says and whom it answers; rendered by `compose_auto_reply`."""

    to: str
    sender_name: str
    subject: str
    reference: str
    queue: str
    language: str | None
    message_id: str
    in_reply_to: str | None
    references: list[str]


def compose_auto_reply(
    account: AccountSettings,
    templates: Mapping[str, TemplateSettings],
    template_name: str,
    parts: ReplyParts,
    *,
    date: datetime,
    original_text: str | None = None,
) -> bytes:
    """The automatic reply as bytes, from the named template in the email's language.

    Raises ValueError (TemplateError) for a template that cannot render or an unusable address.
    """
    template = template_named(template_name, templates)
    office_hours = account.office_hours.describe(account.timezone) if account.office_hours else ""
    context = ReplyContext(
        reference=parts.reference,
        sender_name=parts.sender_name,
        sender_address=parts.to,
        subject=parts.subject,
        queue=parts.queue,
        office_hours=office_hours,
        response_time=account.response_time,
        account=account.name,
        language=parts.language or "",
    )
    quoted = original_text if template.quote != "none" else None
    rendered = render(template, parts.language, context, quoted, name=template_name)
    return build_auto_reply(
        from_address=account.reply_from,
        to_address=parts.to,
        to_name=parts.sender_name,
        subject=parts.subject,
        reference=parts.reference,
        message_id=parts.message_id,
        date=date,
        in_reply_to=parts.in_reply_to,
        references=parts.references,
        text=rendered.text,
        html=rendered.html,
    )

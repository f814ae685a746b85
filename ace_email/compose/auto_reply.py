"""An automatic reply as bytes: the account's template rendered in the email's language,
threaded to the customer's email, with the marks that keep replies from looping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ace_email.compose.messages import build_auto_reply
from ace_email.compose.templates import ReplyContext, TemplateSettings, render, template_named


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
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplySender:
    """The account an automatic reply speaks for, as its templates may name it."""

    account: str
    address: str
    office_hours: str = ""
    response_time: str = ""
    closed: bool = False
    next_opening: str = ""


def compose_auto_reply(
    sender: ReplySender,
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
    context = ReplyContext(
        reference=parts.reference,
        sender_name=parts.sender_name,
        sender_address=parts.to,
        subject=parts.subject,
        queue=parts.queue,
        office_hours=sender.office_hours,
        response_time=sender.response_time,
        account=sender.account,
        language=parts.language or "",
        data=dict(parts.data),
        closed=sender.closed,
        next_opening=sender.next_opening,
    )
    quoted = original_text if template.quote != "none" else None
    rendered = render(template, parts.language, context, quoted, name=template_name)
    return build_auto_reply(
        from_address=sender.address,
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

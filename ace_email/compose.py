"""Outgoing messages, built as bytes: the automatic acknowledgement and the resent original."""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

LOOP_TOKEN = "ace-email"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str, limit: int = 200) -> str:
    """Text made safe for a header: no CR, LF or other control characters, bounded."""
    return _CONTROL.sub(" ", text).strip()[:limit]


def auto_reply_subject(original_subject: str, reference: str) -> str:
    subject = one_line(original_subject) or "(no subject)"
    tag = f"[#{reference}]"
    if tag in subject:
        return subject if subject.lower().startswith("re:") else f"Re: {subject}"
    return f"Re: {subject} {tag}"


def build_auto_reply(
    *,
    from_address: str,
    to_address: str,
    subject: str,
    reference: str,
    message_id: str,
    date: datetime,
    in_reply_to: str | None,
    references: list[str],
) -> bytes:
    """The default acknowledgement (RFC 3834: Auto-Submitted, threaded to the original)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = from_address
    message["To"] = to_address
    message["Subject"] = auto_reply_subject(subject, reference)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = one_line(in_reply_to, 998)
        message["References"] = " ".join(one_line(r, 998) for r in [*references[-10:], in_reply_to])
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Loop"] = LOOP_TOKEN
    message.set_content(
        "Thank you for your email. We have received it and registered it under the reference "
        f"#{reference}.\n\nAn agent will answer you as soon as possible. If you write to us "
        "again about the same matter, please keep the reference in the subject.\n\n"
        f"Your subject: {one_line(subject, 500) or '(no subject)'}\n",
        cte="quoted-printable",
    )
    return message.as_bytes()


def build_resent(
    raw: bytes,
    *,
    resent_from: str,
    resent_to: str,
    resent_message_id: str,
    contact_id: str,
    date: datetime,
) -> bytes:
    """The original message, untouched, under a block of Resent-* fields (RFC 5322 §3.6.6).

    The body and every header of the original stay byte-identical; only new fields are
    prepended, so attachments and signatures survive.
    """
    newline = b"\r\n" if b"\r\n" in raw[:4096] else b"\n"
    fields = [
        f"Resent-Date: {format_datetime(date)}",
        f"Resent-From: {one_line(resent_from, 320)}",
        f"Resent-To: {one_line(resent_to, 320)}",
        f"Resent-Message-ID: {one_line(resent_message_id, 320)}",
        f"X-Ace-Contact: {one_line(contact_id, 200)}",
    ]
    block = newline.join(f.encode("ascii", errors="replace") for f in fields) + newline
    return block + raw

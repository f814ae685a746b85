"""Outgoing messages, built as bytes: the automatic acknowledgement, the resent original, an
agent's reply from the built-in interface, and a work item's document."""

from __future__ import annotations

import re
from datetime import datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime

from ace_email.contracts.ids import LOOP_TOKEN

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INTERNATIONAL_ADDRESS = re.compile(r'[^\s"(),:;<>@\[\]\\]+@[^\s"(),:;<>@\[\]\\]+')
# cte_type 7bit: the stdlib picks 7bit, quoted-printable or base64 for each body part.
_POLICY = SMTP.clone(cte_type="7bit")
_UTF8_POLICY = SMTP.clone(cte_type="7bit", utf8=True)


def policy_for(*addresses: str) -> Policy:
    """SMTPUTF8 headers where an address is internationalised (RFC 6531), else plain ASCII."""
    return _POLICY if all(a.isascii() for a in addresses) else _UTF8_POLICY


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
    text: str,
    html: str | None = None,
    from_name: str = "",
    to_name: str = "",
) -> bytes:
    """The automatic acknowledgement (RFC 3834): threaded to the original, marked automatic.

    `text` is the body; with `html`, the message is multipart/alternative. Raises ValueError
    if `from_address` or `to_address` holds control characters (CR, LF, ...) or is anything
    but exactly one address: the recipient comes from the sender's headers, and must never
    add a header or a second recipient. Display names and the subject are made single-line.
    """
    message = _reply(
        from_address=from_address,
        to_address=to_address,
        subject=subject,
        reference=reference,
        message_id=message_id,
        date=date,
        in_reply_to=in_reply_to,
        references=references,
        from_name=from_name,
        to_name=to_name,
    )
    message["Auto-Submitted"] = "auto-replied"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Loop"] = LOOP_TOKEN
    message.set_content(body_text(text))
    if html is not None:
        message.add_alternative(body_text(html), subtype="html")
        for part in message.iter_parts():
            del part["MIME-Version"]
    return message.as_bytes()


def body_text(text: str) -> str:
    """Text for a body part: Unix newlines, no control characters but tab, a final newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_CONTROL.sub("", text).rstrip() + "\n"


def mailbox(address: str, name: str, field: str) -> Address | str:
    """One mailbox for an address header; ValueError unless `address` is exactly one address.

    An ASCII address goes through the stdlib parser (the display name is then RFC 2047 encoded
    as needed); an internationalised one (RFC 6531) is checked for the characters that could
    split it into several.
    """
    if not address or _CONTROL.search(address):
        raise ValueError(
            f"the {field} address {address!r} is empty or contains control characters (CR, LF…)"
        )
    display = one_line(name)
    if not address.isascii():
        if not _INTERNATIONAL_ADDRESS.fullmatch(address):
            raise ValueError(f"the {field} address {address!r} is not one valid email address")
        quoted = display.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>' if display else address
    try:
        parsed = Address(display_name=display, addr_spec=address)
    except (ValueError, MessageError) as exc:
        raise ValueError(
            f"the {field} address {address!r} is not one valid email address: {exc}"
        ) from None
    if not parsed.username or not parsed.domain:
        raise ValueError(f"the {field} address {address!r} is not one valid email address")
    return parsed


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


def build_reply(
    *,
    from_address: str,
    to_address: str,
    subject: str,
    reference: str,
    message_id: str,
    date: datetime,
    in_reply_to: str | None,
    references: list[str],
    text: str,
) -> bytes:
    """A reply an agent wrote in the built-in interface, threaded to the customer's email.

    Not marked automatic: a person wrote it. The same checks on addresses as the automatic
    reply: exactly one address each, no header can be smuggled in.
    """
    message = _reply(
        from_address=from_address,
        to_address=to_address,
        subject=subject,
        reference=reference,
        message_id=message_id,
        date=date,
        in_reply_to=in_reply_to,
        references=references,
    )
    message.set_content(body_text(text))
    return message.as_bytes()


def _reply(
    *,
    from_address: str,
    to_address: str,
    subject: str,
    reference: str,
    message_id: str,
    date: datetime,
    in_reply_to: str | None,
    references: list[str],
    from_name: str = "",
    to_name: str = "",
) -> EmailMessage:
    """The header of a reply: one sender, one recipient, `Re: subject [#REF]`, threaded."""
    message = EmailMessage(policy=policy_for(from_address, to_address))
    message["From"] = mailbox(from_address, from_name, "From")
    message["To"] = mailbox(to_address, to_name, "To")
    message["Subject"] = auto_reply_subject(subject, reference)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = one_line(message_id, 998)
    if in_reply_to:
        message["In-Reply-To"] = one_line(in_reply_to, 998)
        message["References"] = " ".join(one_line(r, 998) for r in [*references[-10:], in_reply_to])
    return message


def build_work_item(
    *,
    to_address: str,
    reply_to: str | None,
    sender_name: str,
    subject: str,
    text: str,
    channel: str,
    external_id: str | None,
    message_id: str,
    date: datetime,
) -> bytes:
    """A work item's or social contact's document, kept in the account's work-item folder
    like an email in processing: the contact refers to it, its text never enters history."""
    message = EmailMessage(policy=policy_for(to_address, reply_to or ""))
    if reply_to:
        message["From"] = mailbox(reply_to, sender_name, "reply-to")
    message["To"] = mailbox(to_address, "", "To")
    message["Subject"] = one_line(subject) or "(no subject)"
    message["Date"] = format_datetime(date)
    message["Message-ID"] = one_line(message_id, 998)
    message["X-Ace-Channel"] = one_line(channel, 20)
    if external_id:
        message["X-Ace-External-Id"] = one_line(external_id, 200)
    message.set_content(body_text(text))
    return message.as_bytes()

"""The message a report is about: its Message-ID (from the attached message or its header,
from a field of the report, or from a "Message-ID:" line in the returned text) and its
recipients."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.message import Message

from ace_email.analysis.mime.headers import first_msg_id, lenient_addresses
from ace_email.analysis.mime.text import clean

MESSAGE_ID_LIMIT = 200
_EMBEDDED_ID = re.compile(r"^[ \t>]*message-id[ \t]*:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.M)


def bracketed(message_id: str | None) -> str | None:
    """A Message-ID in angle brackets, as a Message-ID field holds it."""
    if not message_id:
        return None
    message_id = clean(message_id, MESSAGE_ID_LIMIT)
    if "@" in message_id and not message_id.startswith("<"):
        return f"<{message_id.strip('<>')}>"
    return message_id or None


def _fields(msg: Message, names: Iterable[str]) -> list[str]:
    wanted = set(names)
    return [str(value) for name, value in msg.raw_items() if str(name).lower() in wanted]


def message_id(
    original: Message | None, report_fields: Sequence[str], returned_texts: Sequence[str]
) -> str | None:
    """The Message-ID of the reported message: the attached message's (or its header's), the
    topmost Resent-Message-ID where it was resent (RFC 5322 section 3.6.6: that send is the one
    that failed); else one a field of the report names (`report_fields`: X-Original-Message-ID,
    In-Reply-To, ...); else the first "Message-ID:" line of the returned text."""
    if original is not None:
        found = first_msg_id(_fields(original, ["resent-message-id"]))
        found = found or first_msg_id(_fields(original, ["message-id"]))
        if found:
            return bracketed(found)
    found = first_msg_id([value for value in report_fields if "<" in value])
    if found:
        return bracketed(found)
    for text in returned_texts:
        match = _EMBEDDED_ID.search(text)
        if match:
            return bracketed(match.group(1))
    return None


def addresses(original: Message, names: Sequence[str]) -> list[str]:
    """The addresses of the first of the `names` fields of the original that has any."""
    for name in names:
        found = [
            address
            for value in _fields(original, [name])
            for _, address in lenient_addresses(value[:4000])
            if "@" in address
        ]
        if found:
            return list(dict.fromkeys(found))
    return []


def only_recipient(original: Message | None) -> str | None:
    """The one recipient (To and Cc) of the returned message, when it had only one."""
    if original is None:
        return None
    found = [
        address
        for value in _fields(original, ["to", "cc"])
        for _, address in lenient_addresses(value[:4000])
        if "@" in address
    ]
    return found[0] if len({a.lower() for a in found}) == 1 else None

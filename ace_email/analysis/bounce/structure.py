"""The parts of a report that matter: its delivery-status and feedback-report bodies, the
human-readable text, and the returned message (attached whole, or only its header)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_string
from email import policy as email_policy
from email.message import Message

from ace_email.analysis.mime.parts import message_body_text
from ace_email.analysis.mime.text import (
    MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
    bytes_text,
    decode_charset,
    unfold,
)

# Characters of any one text part read at most.
TEXT_LIMIT = 64_000
_DSN_TYPES = frozenset(["message/delivery-status", "message/global-delivery-status"])
_MESSAGE_TYPES = frozenset(["message/rfc822", "message/global", "message/partial"])
_HEADER_TYPES = frozenset(
    ["text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header",
     "message/global-headers", "text/rfc822"]
)  # fmt: skip
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w.-]+)", re.IGNORECASE)


@dataclass
class Structure:
    """What a walk over the MIME tree found."""

    content_type: str = ""
    report_type: str = ""
    dsn_texts: list[str] = field(default_factory=list)
    feedback_texts: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    original: Message | None = None


def _content_type(part: Message) -> str:
    """The type/subtype, also of a field that lacks its ";" ("text/plain charset=...")."""
    try:
        value = part.get_content_type().lower()
    except Exception:
        return "text/plain"
    return re.split(r"[;\s]", value.strip(), maxsplit=1)[0] or "text/plain"


def _block_text(block: Message) -> str:
    lines = [f"{name}: {unfold(str(value))}" for name, value in block.raw_items()]
    payload = block.get_payload()
    if isinstance(payload, str) and payload.strip():
        lines.append(payload)
    return "\n".join(lines)


def fields_text(part: Message) -> str:
    """The text of a delivery-status or feedback-report body, however the parser split it."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(_block_text(b) for b in payload if isinstance(b, Message))
    if isinstance(payload, Message):
        return _block_text(payload)
    return leaf_text(part)


def leaf_text(part: Message) -> str:
    """The decoded text of one leaf part: plain text as it is, HTML as its visible text."""
    try:
        text = message_body_text(part, TEXT_LIMIT)
    except Exception:
        text = ""
    if text:
        return text
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes | bytearray):
        payload = part.get_payload()
        return payload[:TEXT_LIMIT] if isinstance(payload, str) else ""
    data = bytes(data[: TEXT_LIMIT * 4])
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = decode_charset(data, charset, None) if charset else bytes_text(data)
    return text[:TEXT_LIMIT].replace("\r\n", "\n").replace("\r", "\n")


def _headers_message(text: str) -> Message | None:
    try:
        return message_from_string(text.lstrip("\r\n"), policy=email_policy.compat32)
    except Exception:
        return None


def walk(msg: Message) -> Structure:
    """The parts of `msg` a report is read from; attached messages are not walked into."""
    found = Structure(content_type=_content_type(msg))
    if found.content_type == "multipart/report":
        match = _REPORT_TYPE.search(str(msg.get("content-type", "")))
        found.report_type = match.group(1).lower() if match else ""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    visited = 0
    while stack and visited < MAX_MIME_PARTS:
        part, depth = stack.pop()
        visited += 1
        content_type = _content_type(part)
        if content_type in _DSN_TYPES:
            found.dsn_texts.append(fields_text(part))
        elif content_type == "message/feedback-report":
            found.feedback_texts.append(fields_text(part))
        elif content_type in _MESSAGE_TYPES:
            if found.original is None:
                found.original = _attached(part)
        elif content_type in _HEADER_TYPES:
            if found.original is None:
                found.original = _headers_message(leaf_text(part))
        elif part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list) and depth < MAX_MIME_DEPTH:
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
        elif (
            content_type in ("text/plain", "text/html")
            or part is msg
            or content_type.startswith("multipart/")
        ):
            _add_text(found, part)
    return found


def _add_text(found: Structure, part: Message) -> None:
    text = leaf_text(part)
    if text.strip():
        found.texts.append(text)


def _attached(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    if isinstance(payload, str):
        return _headers_message(payload)
    return None

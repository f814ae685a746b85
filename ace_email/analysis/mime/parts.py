"""The MIME structure: parsing, attachments, and the body text read from text or HTML parts."""

from __future__ import annotations

import re
from email import policy as email_policy
from email.message import Message
from email.parser import BytesParser
from html import unescape
from typing import Any

from ace_email.analysis.mime.automatic import header_token
from ace_email.analysis.mime.head import Head, parse_head
from ace_email.analysis.mime.headers import raw_content_type
from ace_email.analysis.mime.text import (
    BODY_TEXT_LIMIT,
    CONTENT_TYPE_LIMIT,
    HEAD_SCAN_LIMIT,
    HTML_INPUT_FACTOR,
    HTML_INPUT_MIN,
    MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
    MAX_RECOVERIES,
    MAX_TEXT_CANDIDATES,
    MIME_HEADER_LIMIT,
    NEWLINES,
    WHITESPACE,
    Problems,
    bytes_text,
    charset_name,
    clean,
    decode_charset,
    decode_words,
    desurrogate,
    known_charset,
    more_marker,
    plain_text,
    unfold,
)
from ace_email.contracts.base import LIST_LIMIT, SUMMARY_TEXT_LIMIT
from ace_email.contracts.message import Attachment

# --------------------------------------------------------------------------------------------
# analyse
# --------------------------------------------------------------------------------------------

_MIME_HEADER = re.compile(
    rb"content-(?:type|disposition|transfer-encoding)[ \t]*:"
    rb"[^\r\n]*(?:(?:\r\n|\r|\n)[ \t][^\r\n]*)*"
)


def _has_oversized_mime_header(raw: bytes) -> bool:
    """Whether any part has a Content-* header too long for `policy.default` to parse in time."""
    lower = raw.lower()
    pos = lower.find(b"content-")
    while pos != -1:
        if pos == 0 or lower[pos - 1] in (10, 13):
            match = _MIME_HEADER.match(lower, pos)
            if match and match.end() - pos > MIME_HEADER_LIMIT:
                return True
        pos = lower.find(b"content-", pos + 8)
    return False


def parse(raw: bytes, head: Head, headers_only: bool, problems: Problems) -> Message | None:
    """The message parsed by policy.default, else by compat32, else None."""
    policies = [("policy.default", email_policy.default), ("compat32", email_policy.compat32)]
    if _has_oversized_mime_header(raw[: head.body_start] if headers_only else raw):
        problems.add("oversized Content-* header: parsed with compat32")
        policies = policies[1:]
    for label, policy in policies:
        try:
            return BytesParser(policy=policy).parsebytes(raw, headersonly=headers_only)
        except Exception as exc:  # RecursionError on absurd nesting, among others
            problems.add(f"{label} parser failed: {type(exc).__name__}")
    return None


def _part_header(part: Message, name: str) -> str | None:
    lower = name.lower()
    for field, value in part.raw_items():
        if field.lower() == lower:
            return str(value)
    return None


def part_content_type(part: Message, problems: Problems) -> str:
    try:
        return clean(part.get_content_type(), CONTENT_TYPE_LIMIT).lower()
    except Exception as exc:
        problems.add(f"Content-Type: {type(exc).__name__}; read leniently")
        return raw_content_type(_part_header(part, "content-type"))


def _part_disposition(part: Message, problems: Problems) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception as exc:
        problems.add(f"Content-Disposition: {type(exc).__name__}; read leniently")
        value = _part_header(part, "content-disposition")
        if value is None:
            return None
        return header_token(plain_text(value)) or None


def _part_filename(part: Message, problems: Problems) -> str | None:
    filename: Any = None
    try:
        filename = part.get_filename()
    except Exception as exc:
        problems.add(f"attachment filename: {type(exc).__name__}; read with compat32")
        try:
            lenient = Message()  # compat32 parameter parsing of the raw header values
            for name in ("content-disposition", "content-type"):
                value = _part_header(part, name)
                if value is not None:
                    lenient[name] = unfold(value)
            filename = lenient.get_filename()
        except Exception:
            filename = None
    if not filename:
        return None
    text = clean(decode_words(desurrogate(str(filename))), SUMMARY_TEXT_LIMIT)
    return text or None


def _payload_size(part: Message, problems: Problems) -> int:
    try:
        payload = part.get_payload(decode=True)
    except Exception as exc:
        problems.add(f"attachment payload: {type(exc).__name__}")
        return 0
    return len(payload) if isinstance(payload, bytes | bytearray) else 0


def _message_size(part: Message) -> int:
    try:
        inner = part.get_payload(0)
        return (
            len(inner.as_bytes(policy=email_policy.compat32)) if isinstance(inner, Message) else 0
        )
    except Exception:
        return 0


def _check_charset(part: Message, content_type: str, problems: Problems) -> None:
    try:
        charset = part.get_content_charset()
    except Exception:
        return
    if charset and not known_charset(charset_name(charset)):
        problems.add(f"unknown charset {charset[:40]!r} in a {content_type} part")


def attachments_of(msg: Message, problems: Problems) -> list[Attachment]:
    """Attachments anywhere in the MIME tree, walked without recursion and to a bounded depth.

    A part is an attachment when it is disposed as one, has a file name, or is neither text
    nor a container; an attached message (message/rfc822) is one, and is walked into too.
    """
    return [attachment for attachment, _ in attachment_parts(msg, problems)]


def attachment_parts(msg: Message, problems: Problems) -> list[tuple[Attachment, Message]]:
    """`attachments_of`, each with its MIME part (in the same order)."""
    found: list[tuple[Attachment, Message]] = []
    unlisted = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    visited = 0
    while stack:
        part, depth = stack.pop()
        visited += 1
        if visited > MAX_MIME_PARTS:
            problems.add(f"more than {MAX_MIME_PARTS} MIME parts: rest not read")
            break
        for defect in getattr(part, "defects", ()):
            problems.add(f"MIME: {type(defect).__name__}")
        content_type = part_content_type(part, problems)
        maintype = content_type.split("/", 1)[0]
        try:
            children = part.get_payload() if part.is_multipart() else None
        except Exception:
            children = None
        container = maintype == "multipart" or content_type in ("message/rfc822", "message/global")
        if container and isinstance(children, list):
            if depth and maintype == "message":
                if len(found) < LIST_LIMIT:
                    listed = Attachment(
                        filename=_part_filename(part, problems),
                        content_type=content_type,
                        size=_message_size(part),
                    )
                    found.append((listed, part))
                else:
                    unlisted += 1
            if depth >= MAX_MIME_DEPTH:
                problems.add(f"MIME nesting deeper than {MAX_MIME_DEPTH} levels: not read")
                continue
            stack.extend(
                (child, depth + 1) for child in reversed(children) if isinstance(child, Message)
            )
            continue
        if maintype == "text":
            _check_charset(part, content_type, problems)
        filename = _part_filename(part, problems)
        disposition = _part_disposition(part, problems)
        is_attachment = (
            disposition == "attachment"
            or bool(filename)
            or maintype not in ("text", "multipart", "message")
        )
        if is_attachment and len(found) < LIST_LIMIT:
            listed = Attachment(
                filename=filename,
                content_type=content_type or "application/octet-stream",
                size=_payload_size(part, problems),
            )
            found.append((listed, part))
        elif is_attachment:
            unlisted += 1
    if unlisted:
        problems.add(f"attachments: the first {LIST_LIMIT} listed {more_marker(unlisted)}")
    return found


# --------------------------------------------------------------------------------------------
# Body text
# --------------------------------------------------------------------------------------------

_BODY_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x84\x86-\x9f]+")
_HTML_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_:.()-]+)", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*)+\n")
_HTML_BLOCK = re.compile(
    r"address|article|aside|blockquote|br|dd|div|dl|dt|fieldset|figcaption|figure|footer|form"
    r"|h[1-6]|header|hr|li|main|nav|ol|p|pre|section|table|td|th|tr|ul"
)
_BOUNDARY_LINE = re.compile(rb"^--([^\s\"]{1,200})[ \t]*\r?$", re.MULTILINE)
# "<" opening a tag: a name, "/" and a name, "!" (comment, doctype, CDATA) or "?".
_HTML_TAG = re.compile(r"<(?:(/)?([A-Za-z][A-Za-z0-9:-]{0,40})|[!?])")
_HTML_HIDDEN_END = {
    name: re.compile(rf"</{name}\s*>", re.IGNORECASE)
    for name in ("script", "style", "title", "template", "svg")
}
_HTML_HIDDEN = frozenset(_HTML_HIDDEN_END)
_ASCII_CHARSETS = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us"})


def _html_text(html: str, limit: int) -> str:
    """The visible text of HTML: tags, comments, scripts and styles removed, entities resolved.

    One pass over the markup with `str.find`, in linear time whatever the input (the standard
    library's `html.parser` takes quadratic time on some malformed markup). Block-level tags
    become line breaks.
    """
    out: list[str] = []
    size, pos, end = 0, 0, len(html)

    def add(chunk: str) -> None:
        nonlocal size
        if chunk:
            out.append(chunk)
            size += len(chunk)

    while pos < end and size < limit:
        start = html.find("<", pos)
        if start < 0:
            add(WHITESPACE.sub(" ", unescape(html[pos:])))
            break
        add(WHITESPACE.sub(" ", unescape(html[pos:start])))
        if html.startswith("<!--", start):
            close = html.find("-->", start + 4)
            pos = end if close < 0 else close + 3
            continue
        tag = _HTML_TAG.match(html, start)
        if tag is None:  # a "<" that starts no tag is text
            add("<")
            pos = start + 1
            continue
        close = html.find(">", tag.end())
        if close < 0:
            break  # an unfinished tag at the end shows nothing
        pos = close + 1
        name = (tag.group(2) or "").lower()
        if name in _HTML_HIDDEN and not tag.group(1) and html[close - 1] != "/":
            hidden_end = _HTML_HIDDEN_END[name].search(html, pos)
            pos = end if hidden_end is None else hidden_end.end()
        elif _HTML_BLOCK.fullmatch(name):
            add("\n")
    return "\n".join(line.strip() for line in "".join(out).split("\n"))


def _part_charset(part: Message, data: bytes, html: bool) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    if not charset and html:
        match = _HTML_CHARSET.search(data[:4096])
        if match:
            charset = match.group(1).decode("ascii", "replace")
    return charset_name(str(charset)) if charset else None


def _part_text(part: Message, html: bool, limit: int) -> str | None:
    """The decoded text of one leaf part, or None where it has no readable payload."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return None
    if not isinstance(payload, bytes | bytearray):
        return None
    data = bytes(payload[: limit * HTML_INPUT_FACTOR + HTML_INPUT_MIN if html else limit * 4 + 4])
    charset = _part_charset(part, data, html)
    if charset is None or charset in _ASCII_CHARSETS:
        text = bytes_text(data)
    else:
        text = decode_charset(data, charset, None)
    text = NEWLINES.sub("\n", desurrogate(text))
    if html:
        text = _html_text(text, limit)
    text = _BODY_CONTROLS.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip()[:limit]


def _recover_multipart(part: Message) -> Message | None:
    """A multipart part the parser could not split (no or a wrong boundary), split again.

    The boundary is taken from the first line of the payload that looks like one.
    """
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return None
    if not isinstance(payload, bytes | bytearray):
        return None
    data = bytes(payload)
    match = _BOUNDARY_LINE.search(data, 0, HEAD_SCAN_LIMIT)
    if match is None:
        return None
    boundary = match.group(1)
    synthetic = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n' + data
    recovered = parse(synthetic, parse_head(synthetic), False, Problems())
    return recovered if recovered is not None and recovered.is_multipart() else None


def _text_parts(msg: Message) -> tuple[list[Message], list[Message], list[Message]]:
    """Candidates for the body, in order: text/plain parts, text/html parts, and last,
    multipart parts that could not be split, whose raw payload is all there is.

    Parts disposed as attachments are left out; only multipart containers are walked into
    (not attached messages).
    """
    plain: list[Message] = []
    html: list[Message] = []
    unsplit: list[Message] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    visited = recoveries = 0
    while stack and visited < MAX_MIME_PARTS:
        part, depth = stack.pop()
        visited += 1
        try:
            content_type = part.get_content_type().lower()
        except Exception:
            content_type = raw_content_type(_part_header(part, "content-type"))
        if content_type.startswith("multipart/"):
            try:
                children = part.get_payload() if part.is_multipart() else None
            except Exception:
                children = None
            if depth >= MAX_MIME_DEPTH:
                continue
            if isinstance(children, list):
                stack.extend(
                    (child, depth + 1) for child in reversed(children) if isinstance(child, Message)
                )
            elif recoveries < MAX_RECOVERIES:
                recoveries += 1
                unsplit.append(part)
                recovered = _recover_multipart(part)
                if recovered is not None:
                    stack.append((recovered, depth + 1))
            continue
        if content_type not in ("text/plain", "text/html"):
            continue
        disposition = _part_disposition(part, Problems())
        filename = _part_filename(part, Problems())
        if disposition == "attachment" or (filename and disposition != "inline"):
            continue
        (plain if content_type == "text/plain" else html).append(part)
    return plain, html, unsplit


def message_body_text(msg: Message, limit: int) -> str:
    plain, html, unsplit = _text_parts(msg)
    candidates = [
        *((part, False) for part in plain),
        *((part, True) for part in html),
        *((part, False) for part in unsplit),
    ]
    for part, is_html in candidates[:MAX_TEXT_CANDIDATES]:
        text = _part_text(part, is_html, limit)
        if text:
            return text
    return ""


def body_text(raw: bytes, limit: int = BODY_TEXT_LIMIT) -> str:
    """The human text of a message: its first text/plain part, else its first text/html part.

    Parts disposed as attachments and attached messages are skipped. Transfer encodings and
    charsets are decoded (leniently: unknown charsets as UTF-8, else Windows-1252), HTML is
    reduced to its visible text with entities resolved, line endings become LF, control
    characters are removed and the result is at most `limit` characters. Never raises: ""
    where there is no readable text.
    """
    try:
        data = bytes(raw)
        if limit <= 0 or not data.strip():
            return ""
        head = parse_head(data)
        if not head.fields:
            return ""
        msg = parse(data, head, False, Problems())
        return message_body_text(msg, limit) if msg is not None else ""
    except Exception:
        return ""


def body_html(raw: bytes, limit: int = BODY_TEXT_LIMIT * 8) -> str | None:
    """The first text/html part's markup, decoded to text (charset and transfer encoding), at
    most `limit` characters; None where the message has no HTML body. Never raises. The markup
    is as the sender wrote it: sanitise it before showing it to anyone."""
    try:
        data = bytes(raw)
        head = parse_head(data)
        msg = parse(data, head, False, Problems()) if head.fields else None
        if msg is None:
            return None
        _, html, _ = _text_parts(msg)
        for part in html[:MAX_TEXT_CANDIDATES]:
            markup = _part_text(part, False, limit)
            if markup:
                return markup
        return None
    except Exception:
        return None


def attachment_payload(raw: bytes, index: int) -> tuple[Attachment, bytes] | None:
    """The `index`-th attachment as `analyse` lists it, with its decoded bytes (an attached
    message as its bytes); None where there is no such attachment. Never raises."""
    try:
        data = bytes(raw)
        head = parse_head(data)
        msg = parse(data, head, False, Problems()) if head.fields else None
        if msg is None:
            return None
        parts = attachment_parts(msg, Problems())
        if not 0 <= index < len(parts):
            return None
        listed, part = parts[index]
        if part.is_multipart():
            return listed, part.as_bytes()
        payload = part.get_payload(decode=True)
        return listed, bytes(payload) if isinstance(payload, bytes | bytearray) else b""
    except Exception:
        return None

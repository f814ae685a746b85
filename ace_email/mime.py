"""Pure functions over raw RFC 822 messages: content key, headline, analysis, body text.

Every public function here takes the raw bytes of one message as a mail server stored it and
never raises, whatever those bytes are: empty, binary, truncated, with NUL bytes, invalid
UTF-8, unknown charsets, broken MIME, or headers of a megabyte. Where the standard library's
strict parser (`policy.default`) raises or would be too slow, a lenient path takes over
(`policy.compat32`, `email.utils.getaddresses`, or a byte-level header reader) and the
fallback is recorded in `Analysis.problems`.

All text put into the models is decoded, stripped of control characters (no CR, LF or NUL)
and bounded in length; an `Analysis` serialises to well under 16 KB of JSON.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html import unescape
from typing import Any

from ace_email.compose import LOOP_TOKEN
from ace_email.contracts.base import LIST_LIMIT, SUMMARY_TEXT_LIMIT
from ace_email.contracts.message import Address, Analysis, Attachment
from ace_email.language import detect_language

__all__ = [
    "analyse",
    "automatic_reasons",
    "body_text",
    "header_addresses",
    "headline",
    "message_key",
    "subject_reference",
]

# Header values longer than this (characters) are never handed whole to the strict
# `policy.default` header parser, whose run time grows quadratically with the value's length
# (a 1 MB Subject takes about 25 s). Unstructured values are cut to this length first
# (only SUMMARY_TEXT_LIMIT characters are kept anyway); address lists go to the lenient parser.
STRICT_HEADER_LIMIT = 8192
# A Content-Type, -Disposition or -Transfer-Encoding header longer than this anywhere in the
# message makes it parsed with compat32: policy.default parses those while reading the MIME
# structure, several times per part (half a megabyte of Content-Type takes most of a minute).
MIME_HEADER_LIMIT = 4096
# At most this much of one address header is read (about 30,000 addresses).
ADDRESS_INPUT_LIMIT = 1_000_000
# The byte-level header reader stops after this many bytes of header block.
HEAD_SCAN_LIMIT = 4 * 1024 * 1024
# MIME nesting walked for attachments, and parts visited at most.
MAX_MIME_DEPTH = 20
MAX_MIME_PARTS = 1000
PROBLEM_LIMIT = 20
PROBLEM_TEXT_LIMIT = 120
REASON_LIMIT = 20
REASON_TEXT_LIMIT = 80
ADDRESS_TEXT_LIMIT = SUMMARY_TEXT_LIMIT
CONTENT_TYPE_LIMIT = 100
# body_text: characters returned at most; HTML bytes read at most (markup, styles and
# scripts take room) are HTML_INPUT_FACTOR per character plus HTML_INPUT_MIN.
BODY_TEXT_LIMIT = 100_000
HTML_INPUT_FACTOR = 16
HTML_INPUT_MIN = 256 * 1024
# Broken multiparts split again, and body candidates decoded, per message at most.
MAX_RECOVERIES = 3
MAX_TEXT_CANDIDATES = 20
# Characters of body text given to language detection.
LANGUAGE_BODY_LIMIT = 2000
SPAM_DETAIL_LIMIT = 80
# The serialised Analysis is trimmed (longest lists first) until it fits in this many bytes.
JSON_BUDGET = 12_000

_KEY_VERSION = b"ace-email-key/1\n"
_KEY_HEADERS = ("message-id", "date", "from", "to", "cc", "subject")

# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]+")
# Control characters that are not whitespace (whitespace ones become a space below).
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]+")
_WHITESPACE = re.compile(r"\s+")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def _bytes_text(data: bytes) -> str:
    """Decode header bytes of unknown charset: UTF-8 if valid, else Windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _fix_surrogate_run(match: re.Match[str]) -> str:
    data = bytes(ord(c) - 0xDC00 for c in match.group(0) if 0xDC80 <= ord(c) <= 0xDCFF)
    return _bytes_text(data) if data else "\ufffd"


def _is_utf8(text: str) -> bool:
    """Whether the bytes smuggled into `text` as surrogates are valid UTF-8."""
    try:
        text.encode("utf-8", "surrogateescape").decode("utf-8")
        return True
    except UnicodeError:
        return False


def _desurrogate(text: str) -> str:
    """Turn bytes smuggled in as surrogates (`surrogateescape`) back into real characters."""
    if text.isascii():
        return text
    return _SURROGATES.sub(_fix_surrogate_run, text)


def _clean(text: str, limit: int) -> str:
    """One line of printable text: no control characters, whitespace collapsed, capped."""
    text = _desurrogate(text[: limit * 8 + 64])
    text = _CONTROLS.sub("", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return text[:limit].rstrip()


def _clip(text: str, limit: int) -> str:
    """Like `_clean`, but a text cut short ends in "…", so the summary says it is cut."""
    text = _clean(text, limit + 1)
    return f"{text[: limit - 1].rstrip()}…" if len(text) > limit else text


def more_marker(count: int) -> str:
    """What stands at the end of a list cut short: "… and 4,950 more"."""
    return f"… and {count:,} more"


_MORE = re.compile(r"… and ([\d,]+) more")


def omitted(name: str) -> int:
    """How many entries a `more_marker` says were left out; 0 for any other text."""
    match = _MORE.fullmatch(name)
    return int(match.group(1).replace(",", "")) if match else 0


def _unfold(value: str) -> str:
    return _NEWLINES.sub("", value)


def _plain(value: str) -> str:
    """A raw header value as text: unfolded, undecodable bytes decoded leniently."""
    return _desurrogate(_unfold(value))


class _Problems:
    """A bounded, de-duplicated list of short problem descriptions."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._seen: set[str] = set()
        self._overflow = False

    def add(self, text: str) -> None:
        text = _clean(text, PROBLEM_TEXT_LIMIT)
        if not text or text in self._seen:
            return
        self._seen.add(text)
        if len(self.items) < PROBLEM_LIMIT - 1:
            self.items.append(text)
        elif not self._overflow:
            self._overflow = True
            self.items.append("more problems not listed")


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --------------------------------------------------------------------------------------------
# RFC 2047 encoded words
# --------------------------------------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _ascii_bytes(text: str) -> bytes:
    return text.encode("ascii", "replace")


def _encoded_word_bytes(encoding: str, payload: str) -> bytes:
    if encoding in "bB":
        data = _ascii_bytes(payload)
        for candidate in (data + b"=" * (-len(data) % 4), data[: len(data) - len(data) % 4]):
            try:
                return base64.b64decode(candidate)
            except (binascii.Error, ValueError):
                continue
        return b""
    data = _ascii_bytes(payload.replace("_", " "))
    return _QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)


def _charset_name(charset: str) -> str:
    return charset.split("*", 1)[0].strip().lower()  # RFC 2231 language suffix: utf-8*en


def _known_charset(charset: str) -> bool:
    try:
        codecs.lookup(charset)
        return True
    except Exception:
        return False


def _decode_charset(data: bytes, charset: str, problems: _Problems | None) -> str:
    if not _known_charset(charset):
        if problems is not None:
            problems.add(f"unknown charset {charset[:40]!r}: decoded as UTF-8/Windows-1252")
        return _bytes_text(data)
    try:
        return data.decode(charset, "replace")
    except Exception:  # a non-text codec (rot13, zlib, ...) or a broken one
        if problems is not None:
            problems.add(f"charset {charset[:40]!r} not usable for text")
        return _bytes_text(data)


def _decode_words(text: str, problems: _Problems | None = None) -> str:
    """Decode RFC 2047 encoded words; adjacent words of one charset are joined as bytes first.

    Never raises: broken base64, unknown charsets and stray `=?` are decoded as well as can be.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []

    def flush() -> None:
        for charset, data in pending:
            out.append(_decode_charset(data, charset, problems))
        pending.clear()

    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        if between and (not pending or between.strip()):
            flush()
            out.append(between)
        charset = _charset_name(match.group(1))
        data = _encoded_word_bytes(match.group(2), match.group(3))
        if pending and pending[-1][0] == charset:
            pending[-1] = (charset, pending[-1][1] + data)
        else:
            pending.append((charset, data))
        pos = match.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def _check_encoded_charsets(name: str, value: str, problems: _Problems) -> None:
    for match in _ENCODED_WORD.finditer(value[:STRICT_HEADER_LIMIT]):
        charset = _charset_name(match.group(1))
        if not _known_charset(charset):
            problems.add(f"{name}: unknown charset {charset[:40]!r} in encoded word")


# --------------------------------------------------------------------------------------------
# Byte-level header reader
# --------------------------------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")
_HEADER_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


@dataclass(frozen=True)
class _Head:
    """The header block of a message as read from bytes, without the email package.

    `fields` holds (name, value) with the value decoded as ASCII with `surrogateescape` (as the
    email package's `raw_items()` does) and still folded. `body_start` is the offset of the
    body: after the empty line, or at the first line that is neither a header nor a
    continuation (a missing separator), or at the end.
    """

    fields: list[tuple[str, str]]
    body_start: int


def _parse_head(raw: bytes) -> _Head:
    fields: list[tuple[str, list[bytes]]] = []
    pos, size, first = 0, len(raw), True
    while pos < size:
        if pos > HEAD_SCAN_LIMIT:
            break
        match = _LINE_END.search(raw, pos)
        end, after = (match.start(), match.end()) if match else (size, size)
        line = raw[pos:end]
        if not line:
            pos = after
            break
        if first and line.startswith(b"From "):  # mbox From_ line
            first = False
            pos = after
            continue
        first = False
        if line[:1] in (b" ", b"\t"):
            if fields:
                fields[-1][1].append(line)
            pos = after
            continue
        header = _HEADER_LINE.match(line)
        if header is None:
            break  # no separator: the body starts at this line
        fields.append((header.group(1).decode("ascii"), [line[header.end() :].lstrip(b" \t")]))
        pos = after
    decoded = [
        (name, b"\n".join(parts).decode("ascii", "surrogateescape")) for name, parts in fields
    ]
    return _Head(decoded, min(pos, size))


# --------------------------------------------------------------------------------------------
# message_key
# --------------------------------------------------------------------------------------------

_TRAILING_SPACE = re.compile(rb"[ \t]+\n")
_BYTES_WHITESPACE = re.compile(rb"\s+")


def message_key(raw: bytes) -> str:
    """A content key (hex SHA-256) for one email.

    The same for two copies of one email that differ only in trace headers added on delivery
    (Received, Return-Path, Delivered-To, Authentication-Results, ARC-*, X-Spam-*, ...), in
    line endings (CRLF, LF, CR) or in trailing whitespace; different for different emails
    even when they share a Message-ID or have none. It hashes the Message-ID, Date, From,
    To, Cc and Subject values (unfolded, whitespace collapsed, as bytes) and the body (after
    the header block, line endings normalised, trailing whitespace stripped).
    """
    try:
        data = bytes(raw)
        head = _parse_head(data)
        digest = hashlib.sha256(_KEY_VERSION)
        for wanted in _KEY_HEADERS:
            values = [
                _BYTES_WHITESPACE.sub(b" ", value.encode("ascii", "surrogateescape")).strip()
                for name, value in head.fields
                if name.lower() == wanted
            ]
            digest.update(f"{wanted}:{len(values)}\n".encode())
            for value in values:
                digest.update(len(value).to_bytes(8, "big") + value)
        body = _LINE_END.sub(b"\n", data[head.body_start :])
        body = _TRAILING_SPACE.sub(b"\n", body).rstrip()
        digest.update(b"body:" + hashlib.sha256(body).digest())
        return digest.hexdigest()
    except Exception:
        try:
            fallback = bytes(raw)
        except Exception:
            fallback = repr(raw).encode("utf-8", "replace")
        return hashlib.sha256(b"ace-email-key/fallback\n" + fallback).hexdigest()


# --------------------------------------------------------------------------------------------
# Headers: strict (policy.default) with lenient fallbacks
# --------------------------------------------------------------------------------------------

_MSG_ID = re.compile(r"<[^<>\s]+>")
_ADDR_SPEC = re.compile(r"[^\s<>()\[\],;:\"]+@[^\s<>()\[\],;:\"]+")
_STAND_IN = "xxencodedwordxx"
_STAND_IN_TOKEN = re.compile(_STAND_IN + r"\d+x")
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


class _Headers:
    """The top-level header fields of one message, read strictly where that is safe."""

    def __init__(self, fields: list[tuple[str, str]], problems: _Problems) -> None:
        self.fields = fields
        self.problems = problems
        self._by_name: dict[str, list[str]] = {}
        for field, value in fields:
            self._by_name.setdefault(field.lower(), []).append(value)

    def values(self, name: str) -> list[str]:
        return self._by_name.get(name.lower(), [])

    def strict(self, name: str, value: str) -> Any | None:
        """The `policy.default` header object for a value, or None where that raises."""
        try:
            header = email_policy.default.header_factory(name, _unfold(value))
        except Exception as exc:
            self.problems.add(f"{name}: {_describe(exc)}; read leniently")
            return None
        for defect in getattr(header, "defects", ()):
            self.problems.add(f"{name}: {_describe(defect)}")
        return header

    def text(self, name: str) -> str | None:
        """The first value of an unstructured header, decoded (RFC 2047)."""
        values = self.values(name)
        if not values:
            return None
        value = values[0]
        _check_encoded_charsets(name, value, self.problems)
        if len(value) > STRICT_HEADER_LIMIT:
            self.problems.add(f"{name}: {len(value)} characters long; cut")
            value = value[:STRICT_HEADER_LIMIT]
        if not value.isascii():
            # Raw 8-bit bytes: policy.default turns all but UTF-8 into U+FFFD; decode them here.
            if not _is_utf8(value):
                self.problems.add(f"{name}: raw 8-bit bytes not UTF-8; read as Windows-1252")
        else:
            header = self.strict(name, value)
            if header is not None:
                return str(header)
        return _decode_words(_plain(value), self.problems)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """Every (display name, address) in every field of this name, in order."""
        found: list[tuple[str, str]] = []
        for value in self.values(name):
            _check_encoded_charsets(name, value, self.problems)
            parsed: list[tuple[str, str]] | None = None
            if len(value) > STRICT_HEADER_LIMIT:
                self.problems.add(f"{name}: {len(value)} characters long; read leniently")
            else:
                header = self.strict(name, value)
                if header is not None:
                    try:
                        parsed = [(a.display_name, a.addr_spec) for a in header.addresses]
                    except Exception as exc:
                        self.problems.add(f"{name}: {_describe(exc)}; read leniently")
            if parsed is None:
                parsed = _lenient_addresses(value, self.problems, name)
            found.extend(pair for pair in parsed if pair[0] or pair[1])
        return found


def _lenient_addresses(
    value: str, problems: _Problems | None = None, name: str = "address"
) -> list[tuple[str, str]]:
    """Addresses by `email.utils.getaddresses`, else by pattern; display names decoded."""
    text = _plain(value[:ADDRESS_INPUT_LIMIT])
    if len(value) > ADDRESS_INPUT_LIMIT and problems is not None:
        problems.add(f"{name}: only the first {ADDRESS_INPUT_LIMIT} characters read")
    # Encoded words may hold ":", "@", "," or "<" (Q-encoded display names do, against RFC
    # 2047): stand them in with plain atoms while the address list is split.
    words: dict[str, str] = {}

    def stand_in(match: re.Match[str]) -> str:
        token = f"{_STAND_IN}{len(words)}x"
        words[token] = match.group(0)
        return token

    if _STAND_IN not in text:
        text = _ENCODED_WORD.sub(stand_in, text)

    def restore(part: str) -> str:
        return _STAND_IN_TOKEN.sub(lambda m: words.get(m.group(0), m.group(0)), part)

    try:
        pairs = getaddresses([text])
    except Exception as exc:  # RecursionError on deeply nested comments, among others
        if problems is not None:
            problems.add(f"{name}: {type(exc).__name__}; addresses found by pattern")
        pairs = [("", addr) for addr in _ADDR_SPEC.findall(text)]
    return [
        (_decode_words(restore(display), problems), restore(addr))
        for display, addr in pairs
        if display or addr
    ]


def _address(pair: tuple[str, str]) -> Address:
    display, addr = pair
    return Address(name=_clip(display, ADDRESS_TEXT_LIMIT), addr=_clean(addr, ADDRESS_TEXT_LIMIT))


def _addresses(pairs: list[tuple[str, str]]) -> list[Address]:
    """At most LIST_LIMIT entries; a longer list ends in an entry without an address whose
    name says how many were left out ("… and 4,950 more")."""
    result: list[Address] = []
    for index, pair in enumerate(pairs):
        if len(result) >= LIST_LIMIT - 1 and len(pairs) - index > 1:
            result.append(Address(name=more_marker(len(pairs) - index)))
            break
        address = _address(pair)
        if address.name or address.addr:
            result.append(address)
    return result


def _trim_addresses(addresses: list[Address], keep: int) -> list[Address]:
    """The first `keep` addresses, and a marker counting the rest (earlier markers included)."""
    real = [a for a in addresses if a.addr or not omitted(a.name)]
    left_out = sum(omitted(a.name) for a in addresses if not a.addr) + len(real) - keep
    return [*real[:keep], Address(name=more_marker(left_out))] if left_out > 0 else real


def _msg_ids(value: str) -> list[str]:
    limit = STRICT_HEADER_LIMIT * 16
    if len(value) > limit:  # an absurd References: its start (the root) and its recent end
        value = f"{value[:STRICT_HEADER_LIMIT]} {value[-limit:]}"
    text = _plain(value)
    ids = _MSG_ID.findall(text)
    if not ids and text.strip():
        ids = text.split()
    return [cleaned for cleaned in (_clean(i, SUMMARY_TEXT_LIMIT) for i in ids) if cleaned]


def _first_msg_id(values: list[str]) -> str | None:
    for value in values:
        ids = _msg_ids(value)
        if ids:
            return ids[0]
    return None


def _references(values: list[str]) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    for value in values:
        for msg_id in _msg_ids(value):
            if msg_id not in seen:
                seen.add(msg_id)
                ids.append(msg_id)
    if len(ids) > LIST_LIMIT:  # keep the thread's root and the most recent ones (RFC 5322)
        ids = [ids[0], *ids[-(LIST_LIMIT - 1) :]]
    return ids


def _date(headers: _Headers) -> datetime | None:
    values = headers.values("date")
    if not values:
        return None
    value = values[0][:STRICT_HEADER_LIMIT]
    result: datetime | None = None
    header = headers.strict("Date", value)
    if header is not None:
        result = getattr(header, "datetime", None)
    if result is None:
        try:
            result = parsedate_to_datetime(_clean(value, 200))
        except Exception:
            headers.problems.add("Date: not a valid date")
            return None
    if result.tzinfo is None:  # "-0000": UTC, local zone unknown (RFC 5322 3.3)
        result = result.replace(tzinfo=UTC)
    return result


def _raw_content_type(value: str | None) -> str:
    if not value:
        return "text/plain"
    base = _plain(value[: CONTENT_TYPE_LIMIT * 4]).split(";", 1)[0].strip().lower()
    return base if _CONTENT_TYPE.fullmatch(base) else "text/plain"


# --------------------------------------------------------------------------------------------
# Automatic mail
# --------------------------------------------------------------------------------------------

# Subjects of bounces and absence notices, matched case-insensitively at the very start:
# prefixes such as "Re:" are not stripped, because an auto-reply's subject begins with these.
_AUTO_SUBJECTS: tuple[tuple[str, str], ...] = (
    ("Undeliverable", r"undeliverable"),
    ("Undelivered Mail", r"undelivered\s+mail"),
    ("Delivery Status Notification", r"delivery\s+status\s+notification"),
    ("Mail delivery failed", r"mail\s+delivery\s+failed"),
    ("Delivery failure", r"delivery\s+(?:failure|has\s+failed)"),
    ("Returned mail", r"returned\s+mail"),
    ("failure notice", r"failure\s+notice"),
    ("Message not delivered", r"message\s+not\s+delivered"),
    ("Unzustellbar", r"unzustellbar"),
    ("Nicht zustellbar", r"nicht\s+zustellbar"),
    ("Non remis", r"non\s+remis"),
    ("Ej levererat", r"ej\s+levererat"),
    ("Olevererbart", r"olevererbart"),
    ("No se puede entregar", r"no\s+se\s+puede\s+entregar"),
    ("Non recapitabile", r"non\s+recapitabile"),
    ("Onbestelbaar", r"onbestelbaar"),
    ("Kan ikke leveres", r"kan\s+ikke\s+leveres"),
    ("Automatic reply", r"automatic\s+reply"),
    ("Auto reply", r"auto[\s_-]?reply"),
    ("Auto response", r"auto[\s_-]?response"),
    ("Out of office", r"out\s+of\s+(?:the\s+)?office"),
    ("Abwesenheitsnotiz", r"abwesenheitsnotiz"),
    ("Automatische Antwort", r"automatische\s+antwort"),
    ("Automatisch antwoord", r"automatisch\s+antwoord"),
    ("Frånvaro", r"frånvaro"),
    ("Autosvar", r"autosvar"),
    ("Automatiskt svar", r"automatiskt?\s+svar"),
    ("Automaattinen vastaus", r"automaattinen\s+vastaus"),
    ("Réponse automatique", r"r[ée]ponse\s+automatique"),
    ("Absent du bureau", r"absent(?:e|\(e\))?\s+du\s+bureau"),
    ("Risposta automatica", r"risposta\s+automatica"),
    ("Resposta automática", r"resposta\s+autom[áa]tica"),
    ("Absence", r"absence"),
    ("Respuesta automática", r"respuesta\s+autom[áa]tica"),
    ("Fuera de la oficina", r"fuera\s+de\s+la\s+oficina"),
)
_AUTO_SUBJECT_PATTERNS = [
    (label, re.compile(pattern + r"(?!\w)", re.IGNORECASE)) for label, pattern in _AUTO_SUBJECTS
]
# Local parts of automatic senders: "mailer-daemon", "postmaster", "no-reply+bounces",
# "newsalerts-noreply", "DoNotReply", ...
_AUTOMATIC_SENDERS = re.compile(
    r"(?:mailer[-_]?daemon|postmaster|(?:.*[-_.+])?(?:no[-_.]?reply|do[-_.]?not[-_.]?reply))"
    r"(?:[-+_.].*)?",
    re.IGNORECASE,
)
_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply", "auto-reply"})
_LIST_HEADERS = {
    "list-id": "List-Id",
    "list-unsubscribe": "List-Unsubscribe",
    "list-post": "List-Post",
}
_AUTOREPLY_HEADERS = {
    "x-autoreply": "X-Autoreply",
    "x-autorespond": "X-Autorespond",
    "x-autoresponder": "X-Autoresponder",
    "x-auto-response-suppress": "X-Auto-Response-Suppress",
}
_LOOP_HEADER = re.compile(r"x-(?:.+-)?loop", re.IGNORECASE)
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([\w.-]+)", re.IGNORECASE)
# Message-IDs of ace-email's own outgoing mail (ace_email.contracts.ids): acknowledgements and resent mail.
_OWN_MESSAGE_ID = re.compile(
    r"<ace\.[0-9a-f]+\.(?:autoreply\.[^<>@\s]+|(?:resent|reply)\.[^<>@\s]+\.[^<>@\s]+)@[^<>@\s]+>",
    re.IGNORECASE,
)


def _header_fields(headers: Message | bytes | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(headers, bytes | bytearray | memoryview):
        return _parse_head(bytes(headers)).fields
    if isinstance(headers, Message):
        return [(str(name), str(value)) for name, value in headers.raw_items()]
    return [(str(name), str(value)) for name, value in headers]


def _token(value: str) -> str:
    """The first token of a header value: before any parameter or comment, lower case."""
    return re.split(r"[;(\s]", value.strip().lower(), maxsplit=1)[0]


def automatic_reasons(
    headers: Message | bytes | Iterable[tuple[str, str]],
    sender: str | None = None,
    *,
    own_addresses: Collection[str] = (),
) -> list[str]:
    """Why a message looks automatic (a bounce, an auto-reply, list or bulk mail): short reasons.

    `headers` is a parsed message, the raw message bytes, or (name, raw value) pairs of its
    top-level header. `sender` is the From address; when None it is read from the headers.
    An empty list means the message looks written by a person. Never raises.
    """
    reasons: list[str] = []

    def add(reason: str) -> None:
        reason = _clean(reason, REASON_TEXT_LIMIT)
        if reason and reason not in reasons and len(reasons) < REASON_LIMIT:
            reasons.append(reason)

    try:
        fields = [(name.lower(), _plain(value[:2000])) for name, value in _header_fields(headers)]
    except Exception:
        fields = []
    try:
        _automatic_reasons(fields, sender, own_addresses, add)
    except Exception as exc:  # never expected; a reason is safer than a missed loop
        add(f"automatic-mail check failed: {type(exc).__name__}")
    return reasons


def _automatic_reasons(
    fields: list[tuple[str, str]],
    sender: str | None,
    own_addresses: Collection[str],
    add: Callable[[str], None],
) -> None:
    first: dict[str, str] = {}
    for name, value in fields:
        first.setdefault(name, value)
        token = _token(value)
        if name == "auto-submitted":
            if token and token != "no":
                add(f"Auto-Submitted: {token}")
        elif name == "precedence":
            if token in _PRECEDENCE:
                add(f"Precedence: {token}")
        elif name in _LIST_HEADERS:
            bracketed = _MSG_ID.search(value)  # <list.id> or <mailto:...>: the telling part
            add(f"{_LIST_HEADERS[name]}: {bracketed.group(0) if bracketed else value.strip()}")
        elif name in _AUTOREPLY_HEADERS:
            if token not in ("no", "false", "0"):
                add(f"{_AUTOREPLY_HEADERS[name]}: {value.strip()[:30]}")
        elif _LOOP_HEADER.fullmatch(name):
            add(f"{name.title()}: {value.strip()[:30]}")
            if name == "x-loop" and value.strip().lower() == LOOP_TOKEN.lower():
                add("sent by ace-email (X-Loop)")
        elif name == "message-id":
            if _OWN_MESSAGE_ID.search(value):
                add("sent by ace-email (Message-ID)")
        elif name == "return-path" and _WHITESPACE.sub("", value) == "<>":
            add("Return-Path: <>")

    if sender is None:
        pairs = _lenient_addresses(first["from"]) if "from" in first else []
        sender = pairs[0][1] if pairs else ""
    address = _clean(sender, ADDRESS_TEXT_LIMIT).lower()
    local = address.rsplit("@", 1)[0]
    if local and _AUTOMATIC_SENDERS.fullmatch(local):
        add(f"sender: {local[:40]}")

    content_type = first.get("content-type", "")
    if _raw_content_type(content_type) == "multipart/report":
        report = _REPORT_TYPE.search(content_type)
        add(f"Content-Type: multipart/report{f' ({report.group(1)})' if report else ''}")

    subject = _clean(_decode_words(first.get("subject", "")), SUMMARY_TEXT_LIMIT)
    for label, pattern in _AUTO_SUBJECT_PATTERNS:
        if pattern.match(subject):
            add(f"Subject starts with '{label}'")
            break

    own = {a.strip().lower() for a in own_addresses}
    if address and address in own:
        add("from one of our own addresses")


# --------------------------------------------------------------------------------------------
# headline
# --------------------------------------------------------------------------------------------


def headline(raw: bytes) -> tuple[str, str, str | None]:
    """(sender "Name <addr>" or addr, subject, Message-ID) from the raw header, cheaply.

    Decoded (RFC 2047), one line each, capped at SUMMARY_TEXT_LIMIT characters. Never raises:
    what cannot be read is "" (or None for the Message-ID).
    """
    try:
        head = _parse_head(bytes(raw))
    except Exception:
        return "", "", None
    sender = subject = ""
    message_id: str | None = None
    try:
        from_values = [v for n, v in head.fields if n.lower() == "from"]
        if from_values:
            pairs = _lenient_addresses(from_values[0])
            if pairs:
                sender = _clip(str(_address(pairs[0])), SUMMARY_TEXT_LIMIT)
            else:
                sender = _clip(_decode_words(_plain(from_values[0])), SUMMARY_TEXT_LIMIT)
    except Exception:
        sender = ""
    try:
        subjects = [v for n, v in head.fields if n.lower() == "subject"]
        if subjects:
            subject = _clip(
                _decode_words(_plain(subjects[0][:STRICT_HEADER_LIMIT])), SUMMARY_TEXT_LIMIT
            )
    except Exception:
        subject = ""
    try:
        message_id = _first_msg_id([v for n, v in head.fields if n.lower() == "message-id"])
    except Exception:
        message_id = None
    return sender, subject, message_id


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


def _parse(raw: bytes, head: _Head, headers_only: bool, problems: _Problems) -> Message | None:
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


def _part_content_type(part: Message, problems: _Problems) -> str:
    try:
        return _clean(part.get_content_type(), CONTENT_TYPE_LIMIT).lower()
    except Exception as exc:
        problems.add(f"Content-Type: {type(exc).__name__}; read leniently")
        return _raw_content_type(_part_header(part, "content-type"))


def _part_disposition(part: Message, problems: _Problems) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception as exc:
        problems.add(f"Content-Disposition: {type(exc).__name__}; read leniently")
        value = _part_header(part, "content-disposition")
        if value is None:
            return None
        return _token(_plain(value)) or None


def _part_filename(part: Message, problems: _Problems) -> str | None:
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
                    lenient[name] = _unfold(value)
            filename = lenient.get_filename()
        except Exception:
            filename = None
    if not filename:
        return None
    text = _clean(_decode_words(_desurrogate(str(filename))), SUMMARY_TEXT_LIMIT)
    return text or None


def _payload_size(part: Message, problems: _Problems) -> int:
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


def _check_charset(part: Message, content_type: str, problems: _Problems) -> None:
    try:
        charset = part.get_content_charset()
    except Exception:
        return
    if charset and not _known_charset(_charset_name(charset)):
        problems.add(f"unknown charset {charset[:40]!r} in a {content_type} part")


def _attachments(msg: Message, problems: _Problems) -> list[Attachment]:
    """Attachments anywhere in the MIME tree, walked without recursion and to a bounded depth.

    A part is an attachment when it is disposed as one, has a file name, or is neither text
    nor a container; an attached message (message/rfc822) is one, and is walked into too.
    """
    found: list[Attachment] = []
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
        content_type = _part_content_type(part, problems)
        maintype = content_type.split("/", 1)[0]
        try:
            children = part.get_payload() if part.is_multipart() else None
        except Exception:
            children = None
        container = maintype == "multipart" or content_type in ("message/rfc822", "message/global")
        if container and isinstance(children, list):
            if depth and maintype == "message":
                if len(found) < LIST_LIMIT:
                    found.append(
                        Attachment(
                            filename=_part_filename(part, problems),
                            content_type=content_type,
                            size=_message_size(part),
                        )
                    )
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
            found.append(
                Attachment(
                    filename=filename,
                    content_type=content_type or "application/octet-stream",
                    size=_payload_size(part, problems),
                )
            )
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
            add(_WHITESPACE.sub(" ", unescape(html[pos:])))
            break
        add(_WHITESPACE.sub(" ", unescape(html[pos:start])))
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
    return _charset_name(str(charset)) if charset else None


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
        text = _bytes_text(data)
    else:
        text = _decode_charset(data, charset, None)
    text = _NEWLINES.sub("\n", _desurrogate(text))
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
    recovered = _parse(synthetic, _parse_head(synthetic), False, _Problems())
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
            content_type = _raw_content_type(_part_header(part, "content-type"))
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
        disposition = _part_disposition(part, _Problems())
        filename = _part_filename(part, _Problems())
        if disposition == "attachment" or (filename and disposition != "inline"):
            continue
        (plain if content_type == "text/plain" else html).append(part)
    return plain, html, unsplit


def _body_text(msg: Message, limit: int) -> str:
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
        head = _parse_head(data)
        if not head.fields:
            return ""
        msg = _parse(data, head, False, _Problems())
        return _body_text(msg, limit) if msg is not None else ""
    except Exception:
        return ""


# --------------------------------------------------------------------------------------------
# Spam verdict and contact reference
# --------------------------------------------------------------------------------------------

_SPAM_VERDICT = re.compile(r"\s*(yes|no)\b", re.IGNORECASE)
_SPAM_SCORE = re.compile(r"\b(?:score|hits)\s*=\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_SUBJECT_REFERENCE = re.compile(r"\[#([0-9a-f]{8})\]", re.IGNORECASE)


def _spam_verdict(fields: list[tuple[str, str]]) -> tuple[bool | None, str | None]:
    """(spam, detail) from the topmost readable X-Spam-Flag or X-Spam-Status header.

    The detail is the X-Spam-Status summary ("X-Spam-Status: Yes, score=7.2") when one agrees
    with the verdict, else the header that gave it.
    """
    verdict: bool | None = None
    flag_detail: str | None = None
    statuses: list[tuple[bool, str]] = []
    for name, value in fields:
        lower = name.lower()
        if lower not in ("x-spam-flag", "x-spam-status"):
            continue
        text = _clean(_plain(value[:2000]), 2000)
        match = _SPAM_VERDICT.match(text)
        if match is None:
            continue
        spam = match.group(1).lower() == "yes"
        if lower == "x-spam-flag":
            detail = f"X-Spam-Flag: {'YES' if spam else 'NO'}"
            if verdict is None:
                flag_detail = detail
        else:
            score = _SPAM_SCORE.search(text)
            detail = f"X-Spam-Status: {'Yes' if spam else 'No'}"
            statuses.append((spam, f"{detail}, score={score.group(1)}" if score else detail))
        if verdict is None:
            verdict = spam
    if verdict is None:
        return None, None
    for spam, detail in statuses:
        if spam == verdict:
            return verdict, detail[:SPAM_DETAIL_LIMIT]
    return verdict, (flag_detail or "")[:SPAM_DETAIL_LIMIT] or None


def subject_reference(subject: str) -> str | None:
    """The first contact reference `[#3F9A0C1B]` in a subject, upper case; None if none."""
    try:
        match = _SUBJECT_REFERENCE.search(subject)
    except Exception:
        return None
    return match.group(1).upper() if match else None


def _language(
    msg: Message | None, subject: str, headers_only: bool, languages: Sequence[str]
) -> str | None:
    text = subject
    if msg is not None and not headers_only:
        text = f"{subject}\n{_body_text(msg, LANGUAGE_BODY_LIMIT)}"
    return detect_language(text, languages)


def analyse(
    raw: bytes,
    *,
    own_addresses: Collection[str] = (),
    max_bytes: int | None = None,
    languages: Sequence[str] | None = None,
) -> Analysis:
    """A small summary of one raw email: addresses, subject, ids, attachments, automatic mail.

    `own_addresses` are the mailbox's own addresses (mail from them is automatic: a loop
    guard). `max_bytes` is the size limit above which the message is quarantined (its header
    is still read; its body is not). `languages`, when given, are the language codes the
    message's language is detected among (from its subject and the start of its body text);
    when None, `language` stays None. Never raises; fallbacks and defects go to `problems`.
    """
    problems = _Problems()
    try:
        return _fit(_analyse(bytes(raw), own_addresses, max_bytes, languages, problems))
    except Exception as exc:  # not expected: every step has its own fallback
        problems.add(f"analysis failed: {_describe(exc)}")
        try:
            size = len(raw)
        except Exception:
            size = 0
        return Analysis(
            size=size,
            problems=problems.items,
            quarantine_reason=f"analysis failed: {type(exc).__name__}",
        )


# A message has at least one of these; one without has nothing but a server's trace.
_MESSAGE_FIELDS = frozenset(
    [
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    ]
)


def _analyse(
    raw: bytes,
    own_addresses: Collection[str],
    max_bytes: int | None,
    languages: Sequence[str] | None,
    problems: _Problems,
) -> Analysis:
    size = len(raw)
    if not raw.strip():
        return Analysis(size=size, quarantine_reason="empty message")
    head = _parse_head(raw)
    if not head.fields:
        return Analysis(size=size, quarantine_reason="not an email message: no headers")
    if not any(name.lower() in _MESSAGE_FIELDS for name, _ in head.fields):
        # Only what receiving servers prepend (Return-Path, Received, Delivered-To, ...).
        blank = not raw[head.body_start :].strip()
        return Analysis(
            size=size,
            quarantine_reason=(
                f"{'empty message' if blank else 'not an email message'}: no sender and no "
                "header of its own, only the trace headers of the servers that received it"
            ),
        )
    quarantine_reason: str | None = None
    if max_bytes is not None and size > max_bytes:
        quarantine_reason = f"too large: {size} bytes > limit {max_bytes}"

    msg = _parse(raw, head, quarantine_reason is not None, problems)
    fields = head.fields
    if msg is not None:
        try:
            fields = [(str(name), str(value)) for name, value in msg.raw_items()]
        except Exception as exc:
            problems.add(f"header fields: {type(exc).__name__}; read from bytes")
    headers = _Headers(fields, problems)

    from_pairs = headers.addresses("From")
    sender = _address(from_pairs[0]) if from_pairs else None
    to_pairs = headers.addresses("To")
    cc_pairs = headers.addresses("Cc")

    if msg is not None:
        content_type = _part_content_type(msg, problems)
    else:
        content_types = headers.values("content-type")
        content_type = _raw_content_type(content_types[0] if content_types else None)

    attachments: list[Attachment] = []
    if msg is not None and quarantine_reason is None:
        attachments = _attachments(msg, problems)

    reasons = automatic_reasons(fields, sender.addr if sender else "", own_addresses=own_addresses)
    subject = _clip(headers.text("Subject") or "", SUMMARY_TEXT_LIMIT)
    spam, spam_detail = _spam_verdict(fields)
    language: str | None = None
    if languages is not None:
        language = _language(msg, subject, quarantine_reason is not None, languages)
    return Analysis(
        sender=sender,
        reply_to=_addresses(headers.addresses("Reply-To")),
        to=_addresses(to_pairs),
        cc=_addresses(cc_pairs),
        recipients_total=len(to_pairs) + len(cc_pairs),
        subject=subject,
        date=_date(headers),
        message_id=_first_msg_id(headers.values("message-id")),
        in_reply_to=_first_msg_id(headers.values("in-reply-to")),
        references=_references(headers.values("references")),
        size=size,
        content_type=content_type,
        attachments=attachments,
        automatic=bool(reasons),
        automatic_reasons=reasons,
        language=language,
        spam=spam,
        spam_detail=spam_detail,
        reference=subject_reference(subject),
        problems=problems.items,
        quarantine_reason=quarantine_reason,
    )


_TRIMMED = "summary trimmed to fit the size limit"
_TRIMMABLE = ("references", "attachments", "cc", "to", "reply_to", "problems", "automatic_reasons")


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))


def _fit(analysis: Analysis) -> Analysis:
    """Halve the longest lists until the serialised analysis fits in JSON_BUDGET bytes."""
    for _ in range(100):
        if len(analysis.model_dump_json(by_alias=True).encode("utf-8")) <= JSON_BUDGET:
            return analysis
        candidates = [name for name in _TRIMMABLE if len(getattr(analysis, name)) > 1]
        if not candidates:
            break
        dumped = analysis.model_dump(mode="json", include=set(candidates))
        field = max(candidates, key=lambda name: _json_size(dumped[name]))
        items: list[Any] = list(getattr(analysis, field))
        if field == "references":
            kept = [items[0], *items[len(items) - len(items) // 2 + 1 :]]
        elif field in ("to", "cc", "reply_to"):
            kept = _trim_addresses(items, max(len(items) // 2 - 1, 1))
        else:
            kept = items[: len(items) // 2]
        update: dict[str, Any] = {field: kept}
        if field != "problems" and _TRIMMED not in analysis.problems:
            update["problems"] = [*analysis.problems[: PROBLEM_LIMIT - 1], _TRIMMED]
        analysis = analysis.model_copy(update=update)
    return analysis


def header_addresses(raw: bytes, name: str) -> list[str]:
    """Every address in the top-level fields called `name` (To, Cc, ...), for rules: the
    whole list, where the analysis keeps only its start. Never raises."""
    try:
        values = [v for n, v in _parse_head(bytes(raw)).fields if n.lower() == name.lower()]
        return [
            address
            for value in values
            for _, addr in _lenient_addresses(value)
            if (address := _clean(addr, ADDRESS_TEXT_LIMIT))
        ]
    except Exception:
        return []


def decoded_header_fields(raw: bytes, limit: int = 200) -> list[tuple[str, str]]:
    """The top-level header fields as (name, decoded one-line value) pairs, at most `limit`
    of them: what header conditions of rules look at. Never raises."""
    try:
        fields = _parse_head(bytes(raw)).fields[:limit]
        return [
            (name, _clean(_decode_words(_plain(value[:STRICT_HEADER_LIMIT])), STRICT_HEADER_LIMIT))
            for name, value in fields
        ]
    except Exception:
        return []

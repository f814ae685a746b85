"""Text helpers of the analysis: limits, decoding bytes and RFC 2047 encoded words, cleaning
and clipping text for a summary, and the record of problems met on the way."""

from __future__ import annotations

import base64
import binascii
import codecs
import re

from ace_email.contracts.base import SUMMARY_TEXT_LIMIT

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

KEY_VERSION = b"ace-email-key/1\n"
KEY_HEADERS = ("message-id", "date", "from", "to", "cc", "subject")

# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]+")
# Control characters that are not whitespace (whitespace ones become a space below).
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]+")
WHITESPACE = re.compile(r"\s+")
NEWLINES = re.compile(r"\r\n|\r|\n")


def bytes_text(data: bytes) -> str:
    """Decode header bytes of unknown charset: UTF-8 if valid, else Windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _fix_surrogate_run(match: re.Match[str]) -> str:
    data = bytes(ord(c) - 0xDC00 for c in match.group(0) if 0xDC80 <= ord(c) <= 0xDCFF)
    return bytes_text(data) if data else "\ufffd"


def is_utf8(text: str) -> bool:
    """Whether the bytes smuggled into `text` as surrogates are valid UTF-8."""
    try:
        text.encode("utf-8", "surrogateescape").decode("utf-8")
        return True
    except UnicodeError:
        return False


def desurrogate(text: str) -> str:
    """Turn bytes smuggled in as surrogates (`surrogateescape`) back into real characters."""
    if text.isascii():
        return text
    return _SURROGATES.sub(_fix_surrogate_run, text)


def clean(text: str, limit: int) -> str:
    """One line of printable text: no control characters, whitespace collapsed, capped."""
    text = desurrogate(text[: limit * 8 + 64])
    text = _CONTROLS.sub("", text)
    text = WHITESPACE.sub(" ", text).strip()
    return text[:limit].rstrip()


def clip(text: str, limit: int) -> str:
    """Like `clean`, but a text cut short ends in "…", so the summary says it is cut."""
    text = clean(text, limit + 1)
    return f"{text[: limit - 1].rstrip()}…" if len(text) > limit else text


def more_marker(count: int) -> str:
    """What stands at the end of a list cut short: "… and 4,950 more"."""
    return f"… and {count:,} more"


_MORE = re.compile(r"… and ([\d,]+) more")


def omitted(name: str) -> int:
    """How many entries a `more_marker` says were left out; 0 for any other text."""
    match = _MORE.fullmatch(name)
    return int(match.group(1).replace(",", "")) if match else 0


def unfold(value: str) -> str:
    return NEWLINES.sub("", value)


def plain_text(value: str) -> str:
    """A raw header value as text: unfolded, undecodable bytes decoded leniently."""
    return desurrogate(unfold(value))


class Problems:
    """A bounded, de-duplicated list of short problem descriptions."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._seen: set[str] = set()
        self._overflow = False

    def add(self, text: str) -> None:
        text = clean(text, PROBLEM_TEXT_LIMIT)
        if not text or text in self._seen:
            return
        self._seen.add(text)
        if len(self.items) < PROBLEM_LIMIT - 1:
            self.items.append(text)
        elif not self._overflow:
            self._overflow = True
            self.items.append("more problems not listed")


def describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --------------------------------------------------------------------------------------------
# RFC 2047 encoded words
# --------------------------------------------------------------------------------------------

ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
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


def charset_name(charset: str) -> str:
    return charset.split("*", 1)[0].strip().lower()  # RFC 2231 language suffix: utf-8*en


def known_charset(charset: str) -> bool:
    try:
        codecs.lookup(charset)
        return True
    except Exception:
        return False


def decode_charset(data: bytes, charset: str, problems: Problems | None) -> str:
    if not known_charset(charset):
        if problems is not None:
            problems.add(f"unknown charset {charset[:40]!r}: decoded as UTF-8/Windows-1252")
        return bytes_text(data)
    try:
        return data.decode(charset, "replace")
    except Exception:  # a non-text codec (rot13, zlib, ...) or a broken one
        if problems is not None:
            problems.add(f"charset {charset[:40]!r} not usable for text")
        return bytes_text(data)


def decode_words(text: str, problems: Problems | None = None) -> str:
    """Decode RFC 2047 encoded words; adjacent words of one charset are joined as bytes first.

    Never raises: broken base64, unknown charsets and stray `=?` are decoded as well as can be.
    """
    if "=?" not in text:
        return text
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []

    def flush() -> None:
        for charset, data in pending:
            out.append(decode_charset(data, charset, problems))
        pending.clear()

    pos = 0
    for match in ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        if between and (not pending or between.strip()):
            flush()
            out.append(between)
        charset = charset_name(match.group(1))
        data = _encoded_word_bytes(match.group(2), match.group(3))
        if pending and pending[-1][0] == charset:
            pending[-1] = (charset, pending[-1][1] + data)
        else:
            pending.append((charset, data))
        pos = match.end()
    flush()
    out.append(text[pos:])
    return "".join(out)


def check_encoded_charsets(name: str, value: str, problems: Problems) -> None:
    for match in ENCODED_WORD.finditer(value[:STRICT_HEADER_LIMIT]):
        charset = charset_name(match.group(1))
        if not known_charset(charset):
            problems.add(f"{name}: unknown charset {charset[:40]!r} in encoded word")

"""The header block as bytes, read without the email package, and the content key of an email."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ace_email.analysis.mime.text import HEAD_SCAN_LIMIT, KEY_HEADERS, KEY_VERSION

# --------------------------------------------------------------------------------------------
# Byte-level header reader
# --------------------------------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")
_HEADER_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


@dataclass(frozen=True)
class Head:
    """The header block of a message as read from bytes, without the email package.

    `fields` holds (name, value) with the value decoded as ASCII with `surrogateescape` (as the
    email package's `raw_items()` does) and still folded. `body_start` is the offset of the
    body: after the empty line, or at the first line that is neither a header nor a
    continuation (a missing separator), or at the end.
    """

    fields: list[tuple[str, str]]
    body_start: int


def parse_head(raw: bytes) -> Head:
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
    return Head(decoded, min(pos, size))


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
        head = parse_head(data)
        digest = hashlib.sha256(KEY_VERSION)
        for wanted in KEY_HEADERS:
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

"""Poison mail: eight hostile messages, as raw bytes, the same bytes on every call.

Each is something a support mailbox receives sooner or later: a huge attachment, a mail to
thousands, a header of a megabyte, NUL bytes, headers that are not UTF-8, attached messages
nested deep, an empty file, and bytes that are no email at all.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

SENDER = b"Pat Poison <pat@example.org>"
SUPPORT = b"support@example.com"
DATE = b"Mon, 02 Jun 2025 09:00:00 +0000"
ATTACHMENT_BYTES = 25 * 1024 * 1024
RECIPIENTS = 5000
HEADER_BYTES = 1024 * 1024
NESTING = 50


def _head(name: str, *extra: bytes) -> bytes:
    lines = [
        b"From: " + SENDER,
        b"To: " + SUPPORT,
        b"Date: " + DATE,
        b"Message-ID: <poison-" + name.encode() + b"@example.org>",
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n"


def _pseudo_random(size: int) -> bytes:
    """Incompressible, deterministic bytes: SHA-256 in counter mode over a 1 MiB block."""
    block = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(32768))
    return (block * (size // len(block) + 1))[:size]


def huge_attachment() -> bytes:
    """A short note with a 25 MiB attachment (about 34 MB as base64 on the wire)."""
    encoded = base64.encodebytes(_pseudo_random(ATTACHMENT_BYTES)).replace(b"\n", b"\r\n")
    return (
        _head(
            "huge-attachment",
            b"Subject: Poison: the whole archive attached",
            b"MIME-Version: 1.0",
            b'Content-Type: multipart/mixed; boundary="poison-boundary"',
        )
        + b"\r\n--poison-boundary\r\n"
        + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + b"Please see the attached archive.\r\n"
        + b"--poison-boundary\r\n"
        + b"Content-Type: application/zip\r\n"
        + b'Content-Disposition: attachment; filename="archive.zip"\r\n'
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + encoded
        + b"--poison-boundary--\r\n"
    )


def many_recipients() -> bytes:
    """5,000 recipients: 3,000 in To (ours among them, late), 2,000 in Cc."""
    to = [b"Customer %d <customer%d@example.org>" % (i, i) for i in range(2999)]
    to.insert(2500, SUPPORT)
    cc = [b"cc%d@example.net" % i for i in range(2000)]
    return (
        b"From: " + SENDER + b"\r\n"
        b"To: " + b",\r\n ".join(to) + b"\r\n"
        b"Cc: " + b",\r\n ".join(cc) + b"\r\n"
        b"Date: " + DATE + b"\r\n"
        b"Message-ID: <poison-many-recipients@example.org>\r\n"
        b"Subject: Poison: to everyone\r\n\r\n"
        b"Hello all five thousand of you.\r\n"
    )


def megabyte_header() -> bytes:
    """A Subject of one MiB, folded into lines of about 70 characters."""
    words = b"poison " * (HEADER_BYTES // 7 + 1)
    folded = b"\r\n ".join(words[i : i + 70] for i in range(0, HEADER_BYTES, 70))
    return _head("megabyte-header", b"Subject: " + folded) + b"\r\nA subject of a megabyte.\r\n"


def nul_bytes() -> bytes:
    """NUL bytes in the sender's name, the Subject, the Message-ID and the body."""
    return (
        b"From: Pat\x00Poison <pat@example.org>\r\n"
        b"To: " + SUPPORT + b"\r\n"
        b"Date: " + DATE + b"\r\n"
        b"Message-ID: <poison-nul\x00bytes@example.org>\r\n"
        b"Subject: Poison\x00 with NUL\x00 bytes\r\n\r\n"
        b"Body\x00with\x00NULs\x00\r\n"
    )


def invalid_utf8_headers() -> bytes:
    """Raw 8-bit header values that are not UTF-8 (Latin-1, truncated sequences, 0xFF)."""
    return (
        b"From: J\xf6rg P\xf6ison <joerg@example.org>\r\n"
        b"To: Supp\xc3ort <support@example.com>\r\n"
        b"Date: " + DATE + b"\r\n"
        b"Message-ID: <poison-invalid-utf8@example.org>\r\n"
        b"Subject: Poison: caf\xe9 \xc3\x28 \xff\xfe \xed\xa0\x80 \xf0\x9f\x98\r\n"
        b"X-Mailer: \x80\x81\x8d\x8f\x90\x9d\r\n\r\n"
        b"Gr\xfc\xdfe aus der Poststelle.\r\n"
    )


def nested_messages() -> bytes:
    """message/rfc822 nested 50 deep, a short text at the core."""
    message = b"From: core@example.org\r\nSubject: the core\r\n\r\nhello from the core\r\n"
    for level in range(NESTING - 1, 0, -1):
        message = (
            b"From: level%d@example.org\r\nSubject: level %d\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" % (level, level)
        ) + message
    return (
        _head(
            "nested",
            b"Subject: Poison: forwarded fifty times",
            b"MIME-Version: 1.0",
            b"Content-Type: message/rfc822",
        )
        + b"\r\n"
        + message
    )


def zero_bytes() -> bytes:
    """A message of zero bytes."""
    return b""


def not_mime() -> bytes:
    """Bytes that are no email at all: the start of a PNG image."""
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + _pseudo_random(2048)


def blank_line() -> bytes:
    """A message of one blank line: a server's trace headers are all it will ever have."""
    return b"\r\n"


def binary_lines() -> bytes:
    """Twenty lines of binary bytes (no CR or LF among them), no header at all."""
    lines = []
    for i in range(20):
        line = hashlib.sha256(b"binary-%d" % i).digest() * 2
        lines.append(b"\x8f" + line.replace(b"\r", b"\x8d").replace(b"\n", b"\x8a"))
    return b"\r\n".join(lines) + b"\r\n"


# Junk a sender hands to SMTP: what arrives is the receiving servers' trace headers and this.
JUNK: dict[str, Callable[[], bytes]] = {"blank-line": blank_line, "binary-lines": binary_lines}

POISON: dict[str, Callable[[], bytes]] = {
    "huge-attachment": huge_attachment,
    "many-recipients": many_recipients,
    "megabyte-header": megabyte_header,
    "nul-bytes": nul_bytes,
    "invalid-utf8": invalid_utf8_headers,
    "nested-50": nested_messages,
    "zero-bytes": zero_bytes,
    "not-mime": not_mime,
}

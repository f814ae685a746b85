"""Header fields read strictly (policy.default) with lenient fallbacks: addresses, ids,
references, dates; and an email's headline for the poller."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy as email_policy
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from ace_email.analysis.mime.head import parse_head
from ace_email.analysis.mime.text import (
    ADDRESS_INPUT_LIMIT,
    ADDRESS_TEXT_LIMIT,
    CONTENT_TYPE_LIMIT,
    ENCODED_WORD,
    STRICT_HEADER_LIMIT,
    Problems,
    check_encoded_charsets,
    clean,
    clip,
    decode_words,
    describe,
    is_utf8,
    more_marker,
    omitted,
    plain_text,
    unfold,
)
from ace_email.contracts.base import LIST_LIMIT, SUMMARY_TEXT_LIMIT
from ace_email.contracts.message import Address

# --------------------------------------------------------------------------------------------
# Headers: strict (policy.default) with lenient fallbacks
# --------------------------------------------------------------------------------------------

MSG_ID = re.compile(r"<[^<>\s]+>")
_ADDR_SPEC = re.compile(r"[^\s<>()\[\],;:\"]+@[^\s<>()\[\],;:\"]+")
_STAND_IN = "xxencodedwordxx"
_STAND_IN_TOKEN = re.compile(_STAND_IN + r"\d+x")
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


class Headers:
    """The top-level header fields of one message, read strictly where that is safe."""

    def __init__(self, fields: list[tuple[str, str]], problems: Problems) -> None:
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
            header = email_policy.default.header_factory(name, unfold(value))
        except Exception as exc:
            self.problems.add(f"{name}: {describe(exc)}; read leniently")
            return None
        for defect in getattr(header, "defects", ()):
            self.problems.add(f"{name}: {describe(defect)}")
        return header

    def text(self, name: str) -> str | None:
        """The first value of an unstructured header, decoded (RFC 2047)."""
        values = self.values(name)
        if not values:
            return None
        value = values[0]
        check_encoded_charsets(name, value, self.problems)
        if len(value) > STRICT_HEADER_LIMIT:
            self.problems.add(f"{name}: {len(value)} characters long; cut")
            value = value[:STRICT_HEADER_LIMIT]
        if not value.isascii():
            # Raw 8-bit bytes: policy.default turns all but UTF-8 into U+FFFD; decode them here.
            if not is_utf8(value):
                self.problems.add(f"{name}: raw 8-bit bytes not UTF-8; read as Windows-1252")
        else:
            header = self.strict(name, value)
            if header is not None:
                return str(header)
        return decode_words(plain_text(value), self.problems)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """Every (display name, address) in every field of this name, in order."""
        found: list[tuple[str, str]] = []
        for value in self.values(name):
            check_encoded_charsets(name, value, self.problems)
            parsed: list[tuple[str, str]] | None = None
            if len(value) > STRICT_HEADER_LIMIT:
                self.problems.add(f"{name}: {len(value)} characters long; read leniently")
            else:
                header = self.strict(name, value)
                if header is not None:
                    try:
                        parsed = [(a.display_name, a.addr_spec) for a in header.addresses]
                    except Exception as exc:
                        self.problems.add(f"{name}: {describe(exc)}; read leniently")
            if parsed is None:
                parsed = lenient_addresses(value, self.problems, name)
            found.extend(pair for pair in parsed if pair[0] or pair[1])
        return found


def lenient_addresses(
    value: str, problems: Problems | None = None, name: str = "address"
) -> list[tuple[str, str]]:
    """Addresses by `email.utils.getaddresses`, else by pattern; display names decoded."""
    text = plain_text(value[:ADDRESS_INPUT_LIMIT])
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
        text = ENCODED_WORD.sub(stand_in, text)

    def restore(part: str) -> str:
        return _STAND_IN_TOKEN.sub(lambda m: words.get(m.group(0), m.group(0)), part)

    try:
        pairs = getaddresses([text])
    except Exception as exc:  # RecursionError on deeply nested comments, among others
        if problems is not None:
            problems.add(f"{name}: {type(exc).__name__}; addresses found by pattern")
        pairs = [("", addr) for addr in _ADDR_SPEC.findall(text)]
    return [
        (decode_words(restore(display), problems), restore(addr))
        for display, addr in pairs
        if display or addr
    ]


def address_of(pair: tuple[str, str]) -> Address:
    display, addr = pair
    return Address(name=clip(display, ADDRESS_TEXT_LIMIT), addr=clean(addr, ADDRESS_TEXT_LIMIT))


def address_list(pairs: list[tuple[str, str]]) -> list[Address]:
    """At most LIST_LIMIT entries; a longer list ends in an entry without an address whose
    name says how many were left out ("… and 4,950 more")."""
    result: list[Address] = []
    for index, pair in enumerate(pairs):
        if len(result) >= LIST_LIMIT - 1 and len(pairs) - index > 1:
            result.append(Address(name=more_marker(len(pairs) - index)))
            break
        address = address_of(pair)
        if address.name or address.addr:
            result.append(address)
    return result


def trim_addresses(addresses: list[Address], keep: int) -> list[Address]:
    """The first `keep` addresses, and a marker counting the rest (earlier markers included)."""
    real = [a for a in addresses if a.addr or not omitted(a.name)]
    left_out = sum(omitted(a.name) for a in addresses if not a.addr) + len(real) - keep
    return [*real[:keep], Address(name=more_marker(left_out))] if left_out > 0 else real


def _msg_ids(value: str) -> list[str]:
    limit = STRICT_HEADER_LIMIT * 16
    if len(value) > limit:  # an absurd References: its start (the root) and its recent end
        value = f"{value[:STRICT_HEADER_LIMIT]} {value[-limit:]}"
    text = plain_text(value)
    ids = MSG_ID.findall(text)
    if not ids and text.strip():
        ids = text.split()
    return [cleaned for cleaned in (clean(i, SUMMARY_TEXT_LIMIT) for i in ids) if cleaned]


def first_msg_id(values: list[str]) -> str | None:
    for value in values:
        ids = _msg_ids(value)
        if ids:
            return ids[0]
    return None


def references(values: list[str]) -> list[str]:
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


def header_date(headers: Headers) -> datetime | None:
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
            result = parsedate_to_datetime(clean(value, 200))
        except Exception:
            headers.problems.add("Date: not a valid date")
            return None
    if result.tzinfo is None:  # "-0000": UTC, local zone unknown (RFC 5322 3.3)
        result = result.replace(tzinfo=UTC)
    return result


def raw_content_type(value: str | None) -> str:
    if not value:
        return "text/plain"
    base = plain_text(value[: CONTENT_TYPE_LIMIT * 4]).split(";", 1)[0].strip().lower()
    return base if _CONTENT_TYPE.fullmatch(base) else "text/plain"


# --------------------------------------------------------------------------------------------
# headline
# --------------------------------------------------------------------------------------------


def headline(raw: bytes) -> tuple[str, str, str | None]:
    """(sender "Name <addr>" or addr, subject, Message-ID) from the raw header, cheaply.

    Decoded (RFC 2047), one line each, capped at SUMMARY_TEXT_LIMIT characters. Never raises:
    what cannot be read is "" (or None for the Message-ID).
    """
    try:
        head = parse_head(bytes(raw))
    except Exception:
        return "", "", None
    sender = subject = ""
    message_id: str | None = None
    try:
        from_values = [v for n, v in head.fields if n.lower() == "from"]
        if from_values:
            pairs = lenient_addresses(from_values[0])
            if pairs:
                sender = clip(str(address_of(pairs[0])), SUMMARY_TEXT_LIMIT)
            else:
                sender = clip(decode_words(plain_text(from_values[0])), SUMMARY_TEXT_LIMIT)
    except Exception:
        sender = ""
    try:
        subjects = [v for n, v in head.fields if n.lower() == "subject"]
        if subjects:
            subject = clip(
                decode_words(plain_text(subjects[0][:STRICT_HEADER_LIMIT])), SUMMARY_TEXT_LIMIT
            )
    except Exception:
        subject = ""
    try:
        message_id = first_msg_id([v for n, v in head.fields if n.lower() == "message-id"])
    except Exception:
        message_id = None
    return sender, subject, message_id

"""Automatic mail: the signals of bounces, absence notices, lists and loops, each a reason."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from email.message import Message

from ace_email.analysis.mime.head import parse_head
from ace_email.analysis.mime.headers import MSG_ID, lenient_addresses, raw_content_type
from ace_email.analysis.mime.text import (
    ADDRESS_TEXT_LIMIT,
    REASON_LIMIT,
    REASON_TEXT_LIMIT,
    WHITESPACE,
    clean,
    decode_words,
    plain_text,
)
from ace_email.contracts.base import SUMMARY_TEXT_LIMIT
from ace_email.contracts.ids import LOOP_TOKEN

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
# Message-IDs of ace-email's own outgoing mail (ace_email.contracts.ids): acknowledgements
# and resent mail.
_OWN_MESSAGE_ID = re.compile(
    r"<ace\.[0-9a-f]+\.(?:autoreply\.[^<>@\s]+|(?:resent|reply)\.[^<>@\s]+\.[^<>@\s]+)@[^<>@\s]+>",
    re.IGNORECASE,
)


def _header_fields(headers: Message | bytes | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(headers, bytes | bytearray | memoryview):
        return parse_head(bytes(headers)).fields
    if isinstance(headers, Message):
        return [(str(name), str(value)) for name, value in headers.raw_items()]
    return [(str(name), str(value)) for name, value in headers]


def header_token(value: str) -> str:
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
        reason = clean(reason, REASON_TEXT_LIMIT)
        if reason and reason not in reasons and len(reasons) < REASON_LIMIT:
            reasons.append(reason)

    try:
        fields = [
            (name.lower(), plain_text(value[:2000])) for name, value in _header_fields(headers)
        ]
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
        token = header_token(value)
        if name == "auto-submitted":
            if token and token != "no":
                add(f"Auto-Submitted: {token}")
        elif name == "precedence":
            if token in _PRECEDENCE:
                add(f"Precedence: {token}")
        elif name in _LIST_HEADERS:
            bracketed = MSG_ID.search(value)  # <list.id> or <mailto:...>: the telling part
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
        elif name == "return-path" and WHITESPACE.sub("", value) == "<>":
            add("Return-Path: <>")

    if sender is None:
        pairs = lenient_addresses(first["from"]) if "from" in first else []
        sender = pairs[0][1] if pairs else ""
    address = clean(sender, ADDRESS_TEXT_LIMIT).lower()
    local = address.rsplit("@", 1)[0]
    if local and _AUTOMATIC_SENDERS.fullmatch(local):
        add(f"sender: {local[:40]}")

    content_type = first.get("content-type", "")
    if raw_content_type(content_type) == "multipart/report":
        report = _REPORT_TYPE.search(content_type)
        add(f"Content-Type: multipart/report{f' ({report.group(1)})' if report else ''}")

    subject = clean(decode_words(first.get("subject", "")), SUMMARY_TEXT_LIMIT)
    for label, pattern in _AUTO_SUBJECT_PATTERNS:
        if pattern.match(subject):
            add(f"Subject starts with '{label}'")
            break

    own = {a.strip().lower() for a in own_addresses}
    if address and address in own:
        add("from one of our own addresses")

"""The analysis of one email: its summary for workflow history, the spam verdict, the contact
reference in its subject, and the header views the rules read."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from email.message import Message
from typing import Any

from ace_email.analysis import bounce as bounce_analysis
from ace_email.analysis.language import detect_language
from ace_email.analysis.mime.automatic import automatic_reasons
from ace_email.analysis.mime.head import parse_head
from ace_email.analysis.mime.headers import (
    Headers,
    address_list,
    address_of,
    first_msg_id,
    header_date,
    lenient_addresses,
    raw_content_type,
    references,
    trim_addresses,
)
from ace_email.analysis.mime.parts import (
    attachments_of,
    message_body_text,
    parse,
    part_content_type,
)
from ace_email.analysis.mime.text import (
    ADDRESS_TEXT_LIMIT,
    JSON_BUDGET,
    LANGUAGE_BODY_LIMIT,
    PROBLEM_LIMIT,
    SPAM_DETAIL_LIMIT,
    STRICT_HEADER_LIMIT,
    Problems,
    clean,
    clip,
    decode_words,
    describe,
    plain_text,
)
from ace_email.contracts.base import SUMMARY_TEXT_LIMIT
from ace_email.contracts.message import Analysis, Attachment

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
        text = clean(plain_text(value[:2000]), 2000)
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
        text = f"{subject}\n{message_body_text(msg, LANGUAGE_BODY_LIMIT)}"
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
    problems = Problems()
    try:
        return _fit(_analyse(bytes(raw), own_addresses, max_bytes, languages, problems))
    except Exception as exc:  # not expected: every step has its own fallback
        problems.add(f"analysis failed: {describe(exc)}")
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
    problems: Problems,
) -> Analysis:
    size = len(raw)
    if not raw.strip():
        return Analysis(size=size, quarantine_reason="empty message")
    head = parse_head(raw)
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

    msg = parse(raw, head, quarantine_reason is not None, problems)
    fields = head.fields
    if msg is not None:
        try:
            fields = [(str(name), str(value)) for name, value in msg.raw_items()]
        except Exception as exc:
            problems.add(f"header fields: {type(exc).__name__}; read from bytes")
    headers = Headers(fields, problems)

    from_pairs = headers.addresses("From")
    sender = address_of(from_pairs[0]) if from_pairs else None
    to_pairs = headers.addresses("To")
    cc_pairs = headers.addresses("Cc")

    if msg is not None:
        content_type = part_content_type(msg, problems)
    else:
        content_types = headers.values("content-type")
        content_type = raw_content_type(content_types[0] if content_types else None)

    attachments: list[Attachment] = []
    if msg is not None and quarantine_reason is None:
        attachments = attachments_of(msg, problems)

    reasons = automatic_reasons(fields, sender.addr if sender else "", own_addresses=own_addresses)
    subject = clip(headers.text("Subject") or "", SUMMARY_TEXT_LIMIT)
    spam, spam_detail = _spam_verdict(fields)
    language: str | None = None
    if languages is not None:
        language = _language(msg, subject, quarantine_reason is not None, languages)
    bounce = None
    if (
        msg is not None
        and quarantine_reason is None
        and bounce_analysis.may_be_report(fields, reasons, subject)
    ):
        bounce = bounce_analysis.bounce_of(msg)
    return Analysis(
        sender=sender,
        reply_to=address_list(headers.addresses("Reply-To")),
        to=address_list(to_pairs),
        cc=address_list(cc_pairs),
        recipients_total=len(to_pairs) + len(cc_pairs),
        subject=subject,
        date=header_date(headers),
        message_id=first_msg_id(headers.values("message-id")),
        in_reply_to=first_msg_id(headers.values("in-reply-to")),
        references=references(headers.values("references")),
        size=size,
        content_type=content_type,
        attachments=attachments,
        automatic=bool(reasons),
        automatic_reasons=reasons,
        language=language,
        spam=spam,
        spam_detail=spam_detail,
        reference=subject_reference(subject),
        bounce=bounce,
        problems=problems.items,
        quarantine_reason=quarantine_reason,
    )


_TRIMMED = "summary trimmed to fit the size limit"
_TRIMMABLE = ("references", "attachments", "cc", "to", "reply_to", "problems", "automatic_reasons")


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))


def _fit(analysis: Analysis) -> Analysis:
    """Halve the longest lists (a bounce's recipients among them) until the serialised analysis
    fits in JSON_BUDGET bytes."""
    for _ in range(100):
        if len(analysis.model_dump_json(by_alias=True).encode("utf-8")) <= JSON_BUDGET:
            return analysis
        candidates = [name for name in _TRIMMABLE if len(getattr(analysis, name)) > 1]
        bounce = analysis.bounce
        if bounce is not None and len(bounce.recipients) > 1:
            candidates.append("bounce")
        if not candidates:
            break
        dumped = analysis.model_dump(mode="json", include=set(candidates))
        field = max(candidates, key=lambda name: _json_size(dumped[name]))
        items: list[Any] = [] if field == "bounce" else list(getattr(analysis, field))
        kept: Any
        if field == "bounce" and bounce is not None:
            half = bounce.recipients[: len(bounce.recipients) // 2]
            kept = bounce.model_copy(update={"recipients": half})
        elif field == "references":
            kept = [items[0], *items[len(items) - len(items) // 2 + 1 :]]
        elif field in ("to", "cc", "reply_to"):
            kept = trim_addresses(items, max(len(items) // 2 - 1, 1))
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
        values = [v for n, v in parse_head(bytes(raw)).fields if n.lower() == name.lower()]
        return [
            address
            for value in values
            for _, addr in lenient_addresses(value)
            if (address := clean(addr, ADDRESS_TEXT_LIMIT))
        ]
    except Exception:
        return []


def decoded_header_fields(raw: bytes, limit: int = 200) -> list[tuple[str, str]]:
    """The top-level header fields as (name, decoded one-line value) pairs, at most `limit`
    of them: what header conditions of rules look at. Never raises."""
    try:
        fields = parse_head(bytes(raw)).fields[:limit]
        return [
            (
                name,
                clean(decode_words(plain_text(value[:STRICT_HEADER_LIMIT])), STRICT_HEADER_LIMIT),
            )
            for name, value in fields
        ]
    except Exception:
        return []

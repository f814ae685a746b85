"""A Bounce from one parsed message: whether it is a report at all, of which kind, and which
recipients it reports on (from RFC 3464 fields, an Amazon SES notification, or the prose of a
non-standard bounce, with flufl.bounce as the last resort)."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

from ace_email.analysis.bounce import original
from ace_email.analysis.bounce.arf import JMRP_SUBJECT, Feedback, parse_feedback
from ace_email.analysis.bounce.codes import normal_status, reply_in, status_in
from ace_email.analysis.bounce.dsn import DsnRecipient, DsnReport, parse_fields, typed_value
from ace_email.analysis.bounce.prose import (
    Failure,
    addresses_in,
    command_in,
    explanation,
    failures,
    speaks_of_delay,
)
from ace_email.analysis.bounce.recipient import (
    ADDRESS_LIMIT,
    DIAGNOSTIC_LIMIT,
    Report,
    read_recipient,
)
from ace_email.analysis.bounce.ses import SesNotification, parse_ses
from ace_email.analysis.bounce.signals import bounce_subject, bounce_text, from_automatic_sender
from ace_email.analysis.bounce.structure import Structure, walk
from ace_email.analysis.mime.head import parse_head
from ace_email.analysis.mime.headers import lenient_addresses
from ace_email.analysis.mime.parts import parse
from ace_email.analysis.mime.text import Problems, clean, clip, decode_words, plain_text
from ace_email.contracts.message import Bounce, BounceKind, BounceRecipient

RECIPIENT_LIMIT = 20
# The serialised Bounce is cut (shorter diagnostics, then fewer recipients) to this size.
BOUNCE_JSON_BUDGET = 6000
_SUCCESS = frozenset(["delivered", "relayed", "expanded"])
_ID_FIELDS = ("x-original-message-id", "original-message-id", "in-reply-to")
_FIELD_VALUE_LIMIT = 4000


@dataclass
class _Context:
    msg: Message
    structure: Structure
    fields: dict[str, list[str]]
    explanation: str
    excluded: set[str]

    def first(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0] if values else ""

    def addresses(self, name: str) -> list[str]:
        return [a for v in self.fields.get(name, []) for _, a in lenient_addresses(v) if "@" in a]


def bounce_of(msg: Message) -> Bounce | None:
    """What a bounce, delay, success or feedback report says; None for any other message.

    Never raises: an internal error gives None.
    """
    try:
        return _fit(_bounce_of(msg))
    except Exception:
        return None


def bounce_of_bytes(raw: bytes) -> Bounce | None:
    """`bounce_of` for a raw message. Never raises."""
    try:
        data = bytes(raw)
        head = parse_head(data)
        if not head.fields:
            return None
        msg = parse(data, head, False, Problems())
        return bounce_of(msg) if msg is not None else None
    except Exception:
        return None


def _bounce_of(msg: Message) -> Bounce | None:
    structure = walk(msg)
    fields: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        fields.setdefault(str(name).lower(), []).append(plain_text(str(value)[:_FIELD_VALUE_LIMIT]))
    first_text = structure.texts[0] if structure.texts else ""
    context = _Context(msg, structure, fields, explanation(first_text), _senders(msg, structure))
    feedback = _feedback(context)
    if feedback is not None:
        return feedback
    for text in structure.texts[:3]:
        notification = parse_ses(text)
        if notification is not None and notification.recipients:
            return _from_ses(context, notification)
    report = _dsn_report(structure)
    is_report = bool(structure.dsn_texts) or structure.report_type == "delivery-status"
    if report.recipients:
        kind, recipients = _from_dsn(context, report.recipients)
    elif is_report or _may_be_bounce(context):
        kind, recipients = _from_prose(context)
        if not recipients and not is_report and sum(_signals(context)) < 2:
            return None
    else:
        return None
    return Bounce(
        kind=kind,
        original_message_id=_original_id(context, report.original_message_id),
        recipients=recipients[:RECIPIENT_LIMIT],
        reporting_mta=clean(report.reporting_mta, 200) or None,
    )


def _dsn_report(structure: Structure) -> DsnReport:
    """The DSN fields of the report's delivery-status parts, else of a text quoting them."""
    report = DsnReport()
    for text in structure.dsn_texts:
        parsed = parse_fields(text)
        report.recipients.extend(parsed.recipients)
        report.reporting_mta = report.reporting_mta or parsed.reporting_mta
        report.original_message_id = report.original_message_id or parsed.original_message_id
    if report.recipients:
        return report
    for text in structure.texts:
        lower = text.lower()
        if ("final-recipient:" in lower or "original-recipient:" in lower) and (
            "status:" in lower or "action:" in lower
        ):
            parsed = parse_fields(text)
            if parsed.recipients:
                parsed.reporting_mta = parsed.reporting_mta or report.reporting_mta
                return parsed
    return report


def _senders(msg: Message, structure: Structure) -> set[str]:
    """Addresses that are not failed recipients: the bounce's own and the original sender's."""
    own_fields = ("from", "to", "cc", "sender", "reply-to", "return-path", "delivered-to")
    sources: list[tuple[Message, tuple[str, ...]]] = [(msg, own_fields)]
    if structure.original is not None:
        sources.append((structure.original, ("from", "sender", "return-path", "reply-to")))
    return {
        address.strip().lower()
        for source, names in sources
        for name, value in source.raw_items()
        if str(name).lower() in names
        for _, address in lenient_addresses(str(value)[:_FIELD_VALUE_LIMIT])
        if "@" in address
    }


def _signals(context: _Context) -> tuple[bool, bool, bool]:
    """(sender, subject, text): whether who sent it, its subject and its text say "bounce"."""
    sender = from_automatic_sender(context.first("from"), context.first("return-path"))
    subject = bounce_subject(clean(decode_words(context.first("subject")), 300))
    return sender, subject, bounce_text(context.explanation)


def _may_be_bounce(context: _Context) -> bool:
    if context.fields.get("x-failed-recipients"):
        return True
    sender, subject, text = _signals(context)
    attached = context.structure.original is not None
    return (sender and (subject or text or attached)) or (subject and text)


def _from_ses(context: _Context, notification: SesNotification) -> Bounce:
    message_id = original.bracketed(notification.message_id)
    if notification.kind == "Complaint":
        return Bounce(
            kind="feedback",
            original_message_id=message_id,
            feedback_type=clean(notification.feedback_type, 40) or "abuse",
            recipients=[
                BounceRecipient(address=clean(r.address, ADDRESS_LIMIT), reason="feedback")
                for r in notification.recipients[:RECIPIENT_LIMIT]
            ],
        )
    found = []
    for item in notification.recipients:
        kind, diagnostic = typed_value(item.diagnostic)
        action = item.action or ("failed" if notification.permanent else "delayed")
        found.append(
            DsnRecipient(
                final_recipient=item.address,
                action="delivered" if notification.kind == "Delivery" else action,
                status=item.status,
                diagnostic=diagnostic,
                diagnostic_type=kind.upper(),
            )
        )
    bounce_kind, recipients = _from_dsn(context, found)
    return Bounce(
        kind=bounce_kind,
        original_message_id=message_id,
        recipients=recipients[:RECIPIENT_LIMIT],
        reporting_mta=clean(typed_value(notification.reporting_mta)[1], 200) or None,
    )


def _from_dsn(
    context: _Context, found: list[DsnRecipient]
) -> tuple[BounceKind, list[BounceRecipient]]:
    actions = [_action(r) for r in found]
    success = [r for r, a in zip(found, actions, strict=True) if a in _SUCCESS]
    failed = [r for r, a in zip(found, actions, strict=True) if a not in _SUCCESS]
    if success and not failed:
        return "delivered", [_delivered(r) for r in _unique(success)[:RECIPIENT_LIMIT]]
    chosen = _unique(failed)[:RECIPIENT_LIMIT]
    kind: BounceKind = "delay" if all(_action(r) == "delayed" for r in chosen) else "bounce"
    paragraphs = {f.address.lower(): f for f in failures(context.explanation, context.excluded)}
    single = len(chosen) == 1
    return kind, [_dsn_recipient(context, r, paragraphs, single) for r in chosen]


def _unique(found: list[DsnRecipient]) -> list[DsnRecipient]:
    seen: dict[str, DsnRecipient] = {}
    for recipient in found:
        seen.setdefault(recipient.address.lower() or str(len(seen)), recipient)
    return list(seen.values())


def _action(recipient: DsnRecipient) -> str:
    if recipient.action:
        return recipient.action
    status = normal_status(recipient.status) or ""
    if status.startswith("2."):
        return "delivered"
    return "delayed" if status.startswith("4.") else "failed"


def _delivered(recipient: DsnRecipient) -> BounceRecipient:
    diagnostic = " ".join(recipient.diagnostic.split())
    return BounceRecipient(
        address=clean(recipient.address, ADDRESS_LIMIT),
        status=normal_status(recipient.status) or status_in(diagnostic, "2"),
        reply_code=reply_in(diagnostic, "2"),
        reason="delivered",
        hard=False,
        diagnostic=clip(diagnostic, DIAGNOSTIC_LIMIT),
    )


def _dsn_recipient(
    context: _Context, recipient: DsnRecipient, paragraphs: dict[str, Failure], single: bool
) -> BounceRecipient:
    names = (recipient.address, recipient.actual_recipient, recipient.original_recipient)
    found = [paragraphs[n.lower()] for n in names if n and n.lower() in paragraphs]
    paragraph = found[0].paragraph if found else ""
    diagnostic = recipient.diagnostic or recipient.status_comment
    kind = recipient.diagnostic_type or "SMTP"
    if kind.upper().startswith("X-POSTFIX") and reply_in(diagnostic):
        kind = "SMTP"  # Postfix quoting what the remote server said
    return read_recipient(
        Report(
            address=recipient.address,
            diagnostic=diagnostic,
            paragraph=paragraph,
            explanation=context.explanation,
            single=single,
            field_status=normal_status(recipient.status),
            command=command_in(f"{paragraph} {diagnostic}"),
            action=_action(recipient),
            diagnostic_type=kind,
        )
    )


def _from_prose(context: _Context) -> tuple[BounceKind, list[BounceRecipient]]:
    text = context.explanation
    named = context.addresses("x-failed-recipients")
    found = failures(text, context.excluded)
    if not found and not named:
        # A bounce of mail one sent to oneself has its recipient in its To: too.
        found = failures(text, {a.lower() for a in context.addresses("from")})
    if named:
        by_address = {f.address.lower(): f for f in found}
        found = [by_address.get(a.lower(), Failure(a)) for a in dict.fromkeys(named)]
    if not found:
        found = [Failure(a) for a in _flufl_addresses(context)]
    if not found:
        only = original.only_recipient(context.structure.original)
        found = [Failure(only)] if only else []
    found = found[:RECIPIENT_LIMIT]
    delayed = speaks_of_delay(text) and "permanent" not in text.lower()
    recipients = [
        read_recipient(
            Report(
                address=failure.address,
                diagnostic=failure.paragraph,
                explanation=text,
                single=len(found) == 1,
                command=command_in(failure.paragraph or text),
                action="delayed" if delayed else "failed",
            )
        )
        for failure in found
    ]
    return ("delay" if delayed and recipients else "bounce"), recipients


def _flufl_addresses(context: _Context) -> list[str]:
    """GNU Mailman's bounce detectors' failed addresses, in the order the text names them."""
    try:
        temporary, permanent = all_failures(context.msg)
    except Exception:
        return []
    found = {a.decode("utf-8", "replace") for a in (*permanent, *temporary)}
    found = {a for a in found if "@" in a and a.lower() not in context.excluded}
    order = {a.lower(): i for i, a in enumerate(addresses_in(context.explanation))}
    return sorted(found, key=lambda a: (order.get(a.lower(), len(order)), a.lower()))


def _feedback(context: _Context) -> Bounce | None:
    structure = context.structure
    report: Feedback | None = None
    if structure.feedback_texts or structure.report_type == "feedback-report":
        report = parse_feedback("\n\n".join(structure.feedback_texts))
    elif context.first("x-apple-unsubscribe").strip().lower() == "true":
        report = Feedback(feedback_type="opt-out", recipients=context.addresses("from"))
    elif JMRP_SUBJECT.match(context.first("subject")) and structure.original is not None:
        report = Feedback(feedback_type="abuse")
    if report is None:
        return None
    if not report.recipients and structure.original is not None:
        names = ("x-hmxmroriginalrecipient", "original-rcpt-to", "to")
        report.recipients = original.addresses(structure.original, names)
    return Bounce(
        kind="feedback",
        original_message_id=_original_id(context, ""),
        feedback_type=clean(report.feedback_type, 40) or None,
        reporting_mta=clean(report.reporting_mta, 200) or None,
        recipients=[
            BounceRecipient(address=clean(a, ADDRESS_LIMIT), reason="feedback", hard=False)
            for a in report.recipients[:RECIPIENT_LIMIT]
        ],
    )


def _original_id(context: _Context, from_fields: str) -> str | None:
    fields = [from_fields, *(v for name in _ID_FIELDS for v in context.fields.get(name, []))]
    texts = context.structure.texts
    first = texts[0] if texts else ""
    returned = [first[len(context.explanation) :], *texts[1:]]
    return original.message_id(context.structure.original, fields, returned)


def _fit(bounce: Bounce | None) -> Bounce | None:
    """Shorter diagnostics, then fewer recipients, until the JSON fits BOUNCE_JSON_BUDGET."""
    if bounce is None:
        return None
    limit = DIAGNOSTIC_LIMIT
    while len(bounce.model_dump_json().encode("utf-8")) > BOUNCE_JSON_BUDGET:
        if limit > 80:
            limit //= 2
            kept = [
                r.model_copy(update={"diagnostic": clip(r.diagnostic, limit)})
                for r in bounce.recipients
            ]
        elif len(bounce.recipients) > 1:
            kept = bounce.recipients[: len(bounce.recipients) // 2]
        else:
            break
        bounce = bounce.model_copy(update={"recipients": kept})
    return bounce

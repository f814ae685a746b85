"""What ace-email would make of one email, without sending or creating anything.

The same analysis, extracted data, keyword categories, rules and templates as the worker, on
a file: for trying a pattern, a category, a rule or a template before it goes live
(`starter.py analyse FILE.eml`).
"""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from pydantic import BaseModel

from ace_email.analysis import mime
from ace_email.compose.auto_reply import ReplyParts, compose_auto_reply
from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.message import Analysis, Bounce, Routing
from ace_email.decisions.auto_reply import decide_auto_reply
from ace_email.decisions.enrichment import enrich, routed
from ace_email.decisions.rules import MessageFacts
from ace_email.operations.common import Refused


class AnalysisPreview(BaseModel):
    account: str
    contact_id: str
    reference: str
    analysis: Analysis
    routing: Routing | None
    auto_reply: str
    auto_reply_message: str | None = None
    follow_up_hint: str | None = None


def preview(
    settings: Settings, account_name: str, raw: bytes, received_at: datetime | None = None
) -> AnalysisPreview:
    """Analyse, route and render the automatic reply of `raw` for one account. Raises
    ConfigError for an unknown account; never sends."""
    account = settings.account(account_name)
    policy = settings.policy(account)
    received_at = received_at or datetime.now(UTC)
    analysis = mime.analyse(
        raw,
        own_addresses=policy.own_addresses,
        max_bytes=policy.max_message_bytes,
        languages=settings.analysis.languages,
    )
    key = mime.message_key(raw)
    reference = ids.contact_reference(key)
    routing: Routing | None = None
    if analysis.quarantine_reason is None:
        text = mime.body_text(raw)
        analysis = enrich(
            analysis,
            text,
            patterns=account.extract,
            categories=settings.categories,
            languages=settings.analysis.languages,
        )
        ruled = account.decide(
            MessageFacts(
                analysis=analysis,
                received_at=received_at,
                body=text,
                headers=mime.decoded_header_fields(raw),
                to=mime.header_addresses(raw, "To"),
                cc=mime.header_addresses(raw, "Cc"),
            )
        )
        routing = ruled.routing
        analysis = routed(analysis, ruled)
    hint = _follow_up_hint(analysis)
    if analysis.quarantine_reason:
        outcome, message = f"not sent: quarantined ({analysis.quarantine_reason})", None
    else:
        decision = decide_auto_reply(policy, analysis, routing)
        outcome, message = decision.reason, None
        if decision.to is not None and decision.template is not None:
            template_name = account.template_at(decision.template, received_at)
            outcome = (
                f"would be sent to {decision.to} with template '{template_name}' "
                "(unless the per-sender or hourly limit, or an open contact, stops it)"
            )
            reply = compose_auto_reply(
                account.reply_sender(received_at),
                settings.templates,
                template_name,
                ReplyParts(
                    to=decision.to,
                    sender_name=analysis.sender.name if analysis.sender else "",
                    subject=analysis.subject,
                    reference=reference,
                    queue=routing.queue if routing else account.queue,
                    language=analysis.language,
                    message_id=ids.auto_reply_message_id(account.name, key, account.reply_from),
                    in_reply_to=analysis.message_id,
                    references=analysis.references,
                    data=analysis.data,
                ),
                date=received_at,
                original_text=mime.body_text(raw),
            )
            message = reply.decode("utf-8", "replace")
    return AnalysisPreview(
        account=account.name,
        contact_id=ids.contact_workflow_id(account.name, key),
        reference=reference,
        analysis=analysis,
        routing=routing,
        auto_reply=outcome,
        auto_reply_message=message,
        follow_up_hint=hint,
    )


def _follow_up_hint(analysis: Analysis) -> str | None:
    """Whether the live system would look for an open contact to join."""
    names: list[str] = []
    if analysis.reference:
        names.append(f"the reference [#{analysis.reference}]")
    thread = [*analysis.references, *([analysis.in_reply_to] if analysis.in_reply_to else [])]
    if thread:
        names.append(f"{len(dict.fromkeys(thread))} earlier Message-ID(s)")
    if not names:
        return None
    return (
        f"names {' and '.join(names)}: joins that contact if it is open, "
        "instead of becoming a new one"
    )


def analyse(settings: Settings, file: str, account: str | None, *, as_json: bool) -> str:
    """The `analyse` command: a preview of one email; nothing is sent or created."""
    if not settings.accounts:
        raise Refused("the configuration has no accounts")
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        raise Refused(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        result = preview(settings, account or settings.accounts[0].name, raw)
    except ConfigError as exc:
        raise Refused(str(exc)) from None
    except ValueError as exc:  # a template that does not render
        raise Refused(f"the automatic reply cannot be rendered: {exc}") from None
    if as_json:
        return result.model_dump_json(indent=2, by_alias=True, exclude_none=True)
    return describe_preview(result)


def describe_preview(result: AnalysisPreview) -> str:
    analysis, routing = result.analysis, result.routing
    automatic = "yes: " + "; ".join(analysis.automatic_reasons) if analysis.automatic else "no"
    lines = [
        f"account:     {result.account}",
        f"contact:     {result.contact_id}  [#{result.reference}]",
        f"from:        {analysis.sender or '-'}",
        f"subject:     {analysis.subject or '-'}",
        f"language:    {analysis.language or 'unknown'}",
        f"size:        {analysis.size} bytes, {len(analysis.attachments)} attachment(s)",
        f"automatic:   {automatic}",
    ]
    if analysis.spam is not None:
        lines.append(f"spam:        {'yes' if analysis.spam else 'no'} ({analysis.spam_detail})")
    if analysis.bounce is not None:
        lines += _bounce(analysis.bounce, result.account)
    if analysis.data:
        data = ", ".join(f"{name}={value}" for name, value in analysis.data.items())
        lines.append(f"data:        {data}")
    if analysis.categories:
        lines.append(f"categories:  {_categories(analysis)}")
    if result.follow_up_hint:
        lines.append(f"follow-up:   {result.follow_up_hint}")
    if analysis.quarantine_reason:
        lines.append(f"quarantine:  {analysis.quarantine_reason}")
    if routing is not None:
        lines += [
            f"rule:        {routing.rule}",
            f"queue:       {routing.queue} (priority {routing.priority}, "
            f"skills {', '.join(routing.skills) or '-'}, category {routing.category or '-'})",
        ]
    lines.append(f"auto-reply:  {result.auto_reply}")
    if analysis.problems:
        lines.append(f"problems:    {'; '.join(analysis.problems)}")
    if result.auto_reply_message:
        lines += ["", "----- the automatic reply -----", *_readable(result.auto_reply_message)]
    return "\n".join(lines)


def _bounce(bounce: Bounce, account: str) -> list[str]:
    """A delivery report: its kind, the message it is about, one line per recipient."""
    about = bounce.original_message_id or "a message it does not name"
    own = ids.own_message(bounce.original_message_id or "", account)
    if own is not None:
        about += f" (the {own[1]} of {own[0]})"
    kind = bounce.kind + (f" ({bounce.feedback_type})" if bounce.feedback_type else "")
    lines = [f"report:      {kind} about {about}"]
    for r in bounce.recipients:
        hard = "hard" if r.hard else "soft"
        codes = " ".join(str(c) for c in (r.status, r.reply_code) if c) or "no status"
        detail = f": {r.diagnostic}" if r.diagnostic else ""
        lines.append(f"  recipient: {r.address or '?'} {r.reason}, {codes}, {hard}{detail}")
    return lines


def _categories(analysis: Analysis) -> str:
    """E.g. "invoice (matched: invoice, payment), urgent (matched: asap)"."""
    return ", ".join(
        f"{name} (matched: {', '.join(analysis.matched_words.get(name, [])) or '-'})"
        for name in analysis.categories
    )


def _readable(message_text: str) -> list[str]:
    """An outgoing message as a person reads it: decoded headers, the plain-text part."""
    message = email.message_from_string(message_text, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    lines = [f"{name}: {value}" for name, value in message.items()]
    text = message.get_body(preferencelist=("plain",))
    lines += ["", text.get_content().rstrip() if text is not None else "(no text part)"]
    if message.get_body(preferencelist=("html",)) is not None:
        lines += ["", "(with an HTML alternative; --json shows the whole message)"]
    return lines

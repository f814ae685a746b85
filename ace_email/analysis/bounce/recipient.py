"""One failed recipient read from what a report says of it: its status and reply code, the
reason (the server's own words first, then the text about the recipient, then the whole
report), and whether the failure is hard."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ace_email.analysis.bounce.codes import agree, joined_reply, prefer, reply_in, status_in
from ace_email.analysis.bounce.presets import preset
from ace_email.analysis.bounce.prose import command_word
from ace_email.analysis.bounce.reasons import Evidence, decide, is_hard
from ace_email.analysis.mime.text import clean, clip
from ace_email.contracts.message import BounceRecipient

DIAGNOSTIC_LIMIT = 300
ADDRESS_LIMIT = 254
# Characters of each text about a recipient read at most.
CONTEXT_LIMIT = 3000
_TRANSCRIPT_MARK = re.compile(r"<<<|>>>")
_CONTINUED_REPLY = re.compile(r"\b[245]\d\d-")
_COMMAND_NOTE = re.compile(r"\s*\(in reply to [^()]{1,40} command\)", re.IGNORECASE)
_WORDS = re.compile(r"[^\W\d_]{3}")


@dataclass(frozen=True)
class Report:
    """What a report says of one recipient.

    `diagnostic` is the server's words (a Diagnostic-Code, or the paragraph of a prose
    bounce), `paragraph` the text about the recipient besides them, `explanation` the
    report's whole human-readable text, `single` whether the report is about this recipient
    alone (so the particular words of a known MTA anywhere in it are about this one).
    """

    address: str
    diagnostic: str = ""
    paragraph: str = ""
    explanation: str = ""
    single: bool = False
    field_status: str | None = None
    command: str | None = None
    action: str = "failed"
    diagnostic_type: str = "SMTP"


def one_line(text: str, limit: int = CONTEXT_LIMIT) -> str:
    """Text on one line, SMTP transcript markers ("<<<", ">>>") dropped and a multi-line reply
    joined, so that phrases split across lines are found."""
    spaced = " ".join(_TRANSCRIPT_MARK.sub(" ", text[: limit * 2]).split())
    return joined_reply(spaced[:limit])


def _with_command_note(said: str, about: str) -> str:
    """The server's words with the "(in reply to RCPT TO command)" that follows them in the
    text about the recipient (Postfix puts it there, not in the Diagnostic-Code)."""
    at = about.find(said) if said else -1
    if at < 0:
        return said
    note = _COMMAND_NOTE.match(about, at + len(said))
    return f"{said}{note.group(0)}" if note else said


def read_recipient(report: Report) -> BounceRecipient:
    """The BounceRecipient of what a report says of one recipient."""
    about = one_line(report.paragraph)
    around = one_line(report.explanation)
    said = _with_command_note(one_line(report.diagnostic), about)
    own = f"{said} {about}".strip() if about and about not in said else said
    failure = report.action != "delivered"
    status_text = next((t for t in (said, own) if status_in(t) or reply_in(t)), f"{own} {around}")
    reply = reply_in(status_text, failure=failure)
    status = prefer(report.field_status, status_in(status_text, failure=failure), reply)
    reply = agree(status, reply, status_text)
    known = preset(f" {own} {around if report.single else ''} ".lower())
    # The server's own words first (unless only the first line of a longer reply); then with
    # the text about the recipient; then the whole report.
    whole_reply = not about or not _CONTINUED_REPLY.search(report.diagnostic)
    readings = [said] if whole_reply and _WORDS.search(said) else []
    readings += [own, f"{own} {around}".strip()]
    reason = "undefined"
    for read in dict.fromkeys(r for r in readings if r):
        evidence = Evidence(
            diagnostic=read,
            status=status,
            reply_code=reply,
            command=report.command or command_word(read),
            action=report.action,
            diagnostic_type=report.diagnostic_type.upper(),
            preset=known or preset(f" {read.lower()} "),
        )
        reason = decide(evidence)
        if reason not in ("onhold", "undefined"):
            break
    if reason == "delivered" and failure:
        reason = "undefined"
    return BounceRecipient(
        address=clean(report.address, ADDRESS_LIMIT),
        status=status,
        reply_code=reply,
        reason=reason,
        hard=is_hard(reason, status, own or around),
        diagnostic=clip(said or about or around, DIAGNOSTIC_LIMIT),
    )

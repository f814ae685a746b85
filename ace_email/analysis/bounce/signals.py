"""Whether a message that is no RFC 3464 report is a bounce all the same: who sent it, what its
subject says, what its text says; and the cheap first look the analysis takes before any of
that (header fields only), so that ordinary mail is never parsed as a report."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ace_email.analysis.bounce.arf import JMRP_SUBJECT

# Senders of bounces: the local part or the display name of the From field.
_AUTOMATIC_SENDER = re.compile(
    r"mailer[-_ ]?daemon|\bpostmaster\b|\bpost_master\b|mail delivery (?:subsystem|"
    r"system)|mail deliver system|mail\.delivery\.system|mail administrator|\bmmdf\b"
    r"|\bsmtp[-_ ]?gateway\b|mail system|\bmail router\b|\bnotes mail router\b",
    re.IGNORECASE,
)
# Subjects of bounces, from the start (a bracketed tag such as "[SPAM]" may come first).
_BOUNCE_SUBJECT = re.compile(
    r"\s*(?:\[[^\]]{0,40}\]\s*)?(?:"
    r"undeliver|undelivered|delivery status|returned mail|failure notice|mail delivery"
    r"|delivery fail|delivery notification|mail system error|permanent delivery failure"
    r"|delayed mail|warning: message|message delivery has failed|there was an error sending"
    r"|non[- ]?deliver|mail failure|failed delivery|delivery report|delivery problem"
    r"|message not delivered|unzustellbar|nicht zustellbar|non remis|returned to sender"
    r"|could not deliver|message could not be delivered|mail could not be delivered"
    r"|loop alert|notice of delivery failure|mail failed|error sending message"
    r"|delivery has failed|delivery failure|mail was not delivered|message delivery"
    r"|aws notification message|rejected mail|bounced mail|mail returned"
    r")",
    re.IGNORECASE,
)
# What the text of a bounce says.
_BOUNCE_TEXT = re.compile(
    r"could not be delivered|couldn't be delivered|was not delivered|wasn't able to deliver"
    r"|unable to deliver|delivery to the following recipients? failed|following address"
    r"(?:\(es\))? failed|did not reach the following recipient|undeliverable"
    r"|delivery has failed|permanent error|this is the mail system at|delivery failed"
    r"|error delivering your mail|failed to deliver|transcript of session follows"
    r"|had delivery errors|trouble delivering your message|message delivery failed"
    r"|could not deliver|cannot be delivered|delivery (?:is|has been) delayed"
    r"|has not yet been delivered|temporarily deferred|will keep trying|delivery failure"
    r"|failed addresses follow|no valid recipients|notificationtype|error sending your mail"
    r"|unable to contact|delivery attempts|were not delivered|could not be sent"
    r"|rcpt to|mail from:|smtp error|remote host said|server message|failure reasons"
    r"|mail loop|loop detected|duplicated message-id",
    re.IGNORECASE,
)
# Automatic-mail reasons (ace_email.analysis.mime.automatic) that may come with a report.
_REPORT_REASONS = (
    "Auto-Submitted:", "sender:", "Return-Path: <>", "Content-Type: multipart/report",
    "Subject starts with",
)  # fmt: skip
_REPORT_FIELDS = frozenset(["x-failed-recipients", "x-apple-unsubscribe"])


def from_automatic_sender(from_value: str, return_path: str) -> bool:
    """A From field of a mail system (MAILER-DAEMON, postmaster, ...), or none at all, or a null
    envelope sender (Return-Path: <>)."""
    if "".join(return_path.split()) == "<>":
        return True
    if "@" not in from_value:
        return True
    return bool(_AUTOMATIC_SENDER.search(from_value))


def bounce_subject(subject: str) -> bool:
    return bool(_BOUNCE_SUBJECT.match(subject))


def bounce_text(text: str) -> bool:
    return bool(_BOUNCE_TEXT.search(text[:20_000]))


def may_be_report(fields: Iterable[tuple[str, str]], reasons: Iterable[str], subject: str) -> bool:
    """A cheap first look: whether a message may be a report, from its top-level header fields,
    its automatic-mail reasons and its decoded subject. Ordinary mail says no here."""
    try:
        if any(reason.startswith(_REPORT_REASONS) for reason in reasons):
            return True
        if bounce_subject(subject) or JMRP_SUBJECT.match(subject):
            return True
        for name, value in fields:
            lower = name.lower()
            if lower in _REPORT_FIELDS:
                return True
            if lower == "from" and from_automatic_sender(value[:1000], ""):
                return True
        return False
    except Exception:
        return True

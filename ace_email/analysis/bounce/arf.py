"""Feedback reports: RFC 5965 (ARF, a multipart/report of report-type feedback-report), and the
two common non-standard ones, Microsoft's JMRP complaint (an attached message with an
X-HmXmrOriginalRecipient field) and Apple Mail's unsubscribe request (X-Apple-Unsubscribe)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ace_email.analysis.bounce.dsn import address_value, typed_value

_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9-]{1,40})[ \t]*:[ \t]*(.*)")
_FEEDBACK_TYPES = frozenset(
    ["abuse", "fraud", "virus", "other", "not-spam", "auth-failure", "dkim", "opt-out"]
)
JMRP_SUBJECT = re.compile(r"\s*complaint about message from\b", re.IGNORECASE)


@dataclass
class Feedback:
    """What a feedback report says."""

    feedback_type: str = "abuse"
    reporting_mta: str = ""
    recipients: list[str] = field(default_factory=list)


def _lines(text: str) -> list[str]:
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = f"{lines[-1]} {line.strip()}"
        else:
            lines.append(line.rstrip())
    return lines


def parse_feedback(text: str) -> Feedback:
    """The fields of a message/feedback-report body."""
    report = Feedback()
    for line in _lines(text):
        match = _FIELD.match(line)
        if match is None:
            continue
        name, value = match.group(1).lower(), match.group(2).strip()
        if name == "feedback-type":
            token = value.split()[0].lower() if value.split() else ""
            report.feedback_type = token if token in _FEEDBACK_TYPES else token or "other"
        elif name == "reporting-mta" and not report.reporting_mta:
            report.reporting_mta = typed_value(value)[1]
        elif name in ("original-rcpt-to", "removal-recipient"):
            address = address_value(value)
            if "@" in address and address not in report.recipients:
                report.recipients.append(address)
    return report

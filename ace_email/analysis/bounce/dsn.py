"""RFC 3464 delivery-status fields: the per-message block (Reporting-MTA, ...) and one block per
recipient (Final-Recipient, Action, Status, Diagnostic-Code, ...), read leniently from text:
blocks without blank lines between them, fields out of order, folded values, stray lines."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9-]{1,40})[ \t]*:[ \t]*(.*)")
_PER_MESSAGE = frozenset(
    [
        "reporting-mta", "original-envelope-id", "arrival-date", "received-from-mta",
        "dsn-gateway", "x-postfix-queue-id", "x-postfix-sender", "x-original-message-id",
    ]
)  # fmt: skip
_PER_RECIPIENT = frozenset(
    [
        "final-recipient", "original-recipient", "action", "status", "diagnostic-code",
        "remote-mta", "last-attempt-date", "will-retry-until", "x-actual-recipient",
        "final-log-id", "x-supplementary-info", "x-display-name",
    ]
)  # fmt: skip
_ACTIONS = {
    "failed": "failed", "failure": "failed", "fail": "failed", "delayed": "delayed",
    "delivered": "delivered", "deliverable": "delivered", "relayed": "relayed",
    "expanded": "expanded", "expired": "failed",
}  # fmt: skip


@dataclass
class DsnRecipient:
    """One per-recipient block."""

    final_recipient: str = ""
    original_recipient: str = ""
    action: str = ""
    status: str = ""
    diagnostic: str = ""
    diagnostic_type: str = ""
    remote_mta: str = ""
    actual_recipient: str = ""

    @property
    def address(self) -> str:
        return self.final_recipient or self.original_recipient or self.actual_recipient

    @property
    def status_comment(self) -> str:
        """The comment of the Status: field, "4.0.0 (host name lookup failure)": some MTAs
        say no more than that."""
        match = re.search(r"\((.+)\)", self.status)
        return match.group(1) if match else ""


@dataclass
class DsnReport:
    """The fields of one delivery-status report."""

    reporting_mta: str = ""
    original_message_id: str = ""
    recipients: list[DsnRecipient] = field(default_factory=list)


def _unfolded(text: str) -> list[str]:
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines and lines[-1]:
            lines[-1] = f"{lines[-1]} {line.strip()}"
        else:
            lines.append(line.rstrip())
    return lines


def typed_value(value: str) -> tuple[str, str]:
    """("rfc822", "user@example.com") of "rfc822; <user@example.com>"; the type is "" when
    there is no "type;" part."""
    kind, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"\s*[A-Za-z][\w.-]{0,30}\s*", kind):
        return kind.strip().lower(), rest.strip()
    return "", value.strip()


def address_value(value: str) -> str:
    """The bare address of a recipient field: type, angle brackets and quotes removed."""
    _, rest = typed_value(value)
    rest = rest.strip()
    match = re.search(r"<([^<>\s]+)>", rest)
    words = rest.split()
    rest = match.group(1) if match else (words[0] if words else "")
    return rest.strip("<>\"'();,").removeprefix("mailto:")


def action_value(value: str) -> str:
    token = value.strip().lower().split(" ")[0].strip("();,.") if value.strip() else ""
    return _ACTIONS.get(token, token)


def parse_fields(text: str) -> DsnReport:
    """The DSN fields of a text (a message/delivery-status body, or a text that quotes one)."""
    report = DsnReport()
    current: DsnRecipient | None = None
    pending: dict[str, str] = {}
    for line in _unfolded(text):
        match = _FIELD.match(line)
        if match is None:
            continue
        name, value = match.group(1).lower(), match.group(2).strip()
        if name in _PER_MESSAGE:
            if name == "reporting-mta" and not report.reporting_mta:
                report.reporting_mta = typed_value(value)[1]
            elif name == "x-original-message-id" and not report.original_message_id:
                report.original_message_id = value
            continue
        if name not in _PER_RECIPIENT:
            continue
        if name == "original-recipient":
            # Usually first in a block; some MTAs put it after Final-Recipient.
            if current is None or current.original_recipient or current.action or current.status:
                current = DsnRecipient()
                report.recipients.append(current)
            current.original_recipient = address_value(value)
        elif name == "final-recipient":
            if current is None or current.final_recipient:
                current = DsnRecipient()
                report.recipients.append(current)
            current.final_recipient = address_value(value)
        elif current is None:
            pending.setdefault(name, value)
        else:
            _set(current, name, value)
    for recipient in report.recipients:
        for name, value in pending.items():
            _set(recipient, name, value, keep=True)
    return report


def _set(recipient: DsnRecipient, name: str, value: str, keep: bool = False) -> None:
    if name == "action":
        if not (keep and recipient.action):
            recipient.action = action_value(value)
    elif name == "status":
        if not (keep and recipient.status):
            recipient.status = value
    elif name == "diagnostic-code":
        if not (keep and recipient.diagnostic):
            kind, rest = typed_value(value)
            recipient.diagnostic_type = kind.upper()
            recipient.diagnostic = rest if kind else value
    elif name == "remote-mta":
        if not (keep and recipient.remote_mta):
            recipient.remote_mta = typed_value(value)[1]
    elif name == "x-actual-recipient":
        recipient.actual_recipient = address_value(value)

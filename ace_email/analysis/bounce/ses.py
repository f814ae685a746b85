"""Amazon SES notifications mailed by Amazon SNS: a JSON document (notificationType Bounce,
Complaint or Delivery), possibly wrapped in an SNS envelope whose "Message" holds it as an
escaped string. Read as JSON when it parses, else field by field (long lines are often cut)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TYPE = re.compile(r'"notificationType"\s*:\s*"(Bounce|Complaint|Delivery)"')
_OBJECT = re.compile(r"\{[^{}]*\}")
_STRING = r'"((?:[^"\\]|\\.)*)"'
_MESSAGE_ID = re.compile(r'"name"\s*:\s*"Message-I[Dd]"\s*,\s*"value"\s*:\s*"(<[^"<>]+>)"')
_COMMON_ID = re.compile(r'"messageId"\s*:\s*"(<[^"<>]+>)"')


@dataclass
class SesRecipient:
    """One recipient of a notification."""

    address: str
    action: str = ""
    status: str = ""
    diagnostic: str = ""


@dataclass
class SesNotification:
    """What one notification says."""

    kind: str
    recipients: list[SesRecipient] = field(default_factory=list)
    permanent: bool = True
    feedback_type: str = ""
    reporting_mta: str = ""
    message_id: str = ""


def _value(obj: str, name: str) -> str:
    match = re.search(rf'"{name}"\s*:\s*{_STRING}', obj)
    return match.group(1).replace('\\"', '"') if match else ""


def _unescaped(text: str) -> str:
    """The text with one level of JSON string escaping undone (an SNS envelope's Message)."""
    return text.replace('\\"', '"').replace("\\\\", "\\")


def parse_ses(text: str) -> SesNotification | None:
    """The notification in a text; None when there is none."""
    if "notificationType" not in text:
        return None
    if _TYPE.search(text) is None:
        text = _unescaped(text)
    match = _TYPE.search(text)
    if match is None:
        return None
    document = _document(text, match.start())
    if document is not None:
        return _from_json(document)
    return _from_fields(match.group(1), text)


def _document(text: str, at: int) -> dict[str, Any] | None:
    start = text.rfind("{", 0, at)
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _from_json(document: dict[str, Any]) -> SesNotification:
    kind = str(document.get("notificationType", ""))
    found = SesNotification(kind=kind)
    mail = document.get("mail") if isinstance(document.get("mail"), dict) else {}
    common = mail.get("commonHeaders", {}) if isinstance(mail, dict) else {}
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        found.message_id = common["messageId"]
    if kind == "Bounce":
        bounce = document.get("bounce", {})
        found.permanent = bounce.get("bounceType") != "Transient"
        found.reporting_mta = str(bounce.get("reportingMTA", ""))
        for item in bounce.get("bouncedRecipients", []):
            found.recipients.append(
                SesRecipient(
                    address=str(item.get("emailAddress", "")),
                    action=str(item.get("action", "")),
                    status=str(item.get("status", "")),
                    diagnostic=str(item.get("diagnosticCode", "")),
                )
            )
    elif kind == "Complaint":
        complaint = document.get("complaint", {})
        found.feedback_type = str(complaint.get("complaintFeedbackType", "abuse"))
        for item in complaint.get("complainedRecipients", []):
            found.recipients.append(SesRecipient(address=str(item.get("emailAddress", ""))))
    elif kind == "Delivery":
        delivery = document.get("delivery", {})
        response = str(delivery.get("smtpResponse", ""))
        found.reporting_mta = str(delivery.get("reportingMTA", ""))
        for address in delivery.get("recipients", []):
            found.recipients.append(
                SesRecipient(address=str(address), action="delivered", diagnostic=response)
            )
    return found


def _from_fields(kind: str, text: str) -> SesNotification:
    found = SesNotification(kind=kind)
    id_match = _COMMON_ID.search(text) or _MESSAGE_ID.search(text)
    found.message_id = id_match.group(1) if id_match else ""
    found.permanent = _value(text, "bounceType") != "Transient"
    found.reporting_mta = _value(text, "reportingMTA")
    found.feedback_type = _value(text, "complaintFeedbackType") or "abuse"
    if kind == "Delivery":
        response = _value(text, "smtpResponse")
        listed = re.search(r'"recipients"\s*:\s*\[([^\]]*)\]', text)
        for address in re.findall(_STRING, listed.group(1) if listed else ""):
            found.recipients.append(SesRecipient(address, "delivered", "", response))
        return found
    section = "bouncedRecipients" if kind == "Bounce" else "complainedRecipients"
    listed = re.search(rf'"{section}"\s*:\s*\[(.*?)\]', text, re.DOTALL)
    for obj in _OBJECT.findall(listed.group(1) if listed else ""):
        address = _value(obj, "emailAddress")
        if address:
            found.recipients.append(
                SesRecipient(
                    address=address,
                    action=_value(obj, "action"),
                    status=_value(obj, "status"),
                    diagnostic=_value(obj, "diagnosticCode"),
                )
            )
    return found

"""Business-keyed identifiers: the same email always maps to the same contact."""

from __future__ import annotations

import re

CONTACT_KEY_LENGTH = 20
REFERENCE_LENGTH = 8


def mailbox_workflow_id(account: str) -> str:
    return f"mailbox-{account}"


def contact_workflow_id(account: str, key: str) -> str:
    """One contact per (account, email content): stable across re-polls, crashes and copies."""
    return f"contact-{account}-{key[:CONTACT_KEY_LENGTH]}"


def contact_reference(key: str) -> str:
    """The short reference a customer sees in a subject, e.g. `[#3F9A0C1B]`."""
    return key[:REFERENCE_LENGTH].upper()


def mail_domain(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def auto_reply_message_id(account: str, key: str, return_address: str) -> str:
    """Deterministic, so a retried send can be recognised in the Sent folder."""
    return f"<ace.{key[:32]}.autoreply.{account}@{mail_domain(return_address)}>"


def resent_message_id(account: str, key: str, agent_id: str, return_address: str) -> str:
    return f"<ace.{key[:32]}.resent.{agent_id}.{account}@{mail_domain(return_address)}>"


def ledger_workflow_id(account: str) -> str:
    return f"autoreply-ledger-{account}"


def contact_of_own_message_id(message_id: str, account: str) -> str | None:
    """The contact whose automatic reply or delivery this account sent under `message_id`."""
    pattern = rf"<ace\.([0-9a-f]{{20,64}})\.(?:autoreply|resent\..+)\.{re.escape(account)}@[^>]*>"
    match = re.fullmatch(pattern, message_id)
    return contact_workflow_id(account, match.group(1)) if match else None

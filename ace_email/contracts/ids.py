"""Business-keyed identifiers: the same email always maps to the same contact; and the marks
ace-email's own outgoing mail carries, by which it knows it again."""

from __future__ import annotations

import re

CONTACT_KEY_LENGTH = 20
LOOP_TOKEN = "ace-email"  # the X-Loop value of every message ace-email sends
REFERENCE_LENGTH = 8


def mailbox_workflow_id(account: str) -> str:
    return f"mailbox-{account}"


def contact_workflow_id(account: str, key: str) -> str:
    """One contact per (account, email content): stable across re-polls, crashes and copies."""
    return f"contact-{account}-{key[:CONTACT_KEY_LENGTH]}"


def account_of_workflow(workflow_id: str) -> str | None:
    """The account a mailbox's, a contact's or a reply ledger's workflow id belongs to."""
    for prefix in ("mailbox-", "autoreply-ledger-"):
        if workflow_id.startswith(prefix):
            return workflow_id.removeprefix(prefix) or None
    if workflow_id.startswith("contact-") and len(workflow_id) > 9 + CONTACT_KEY_LENGTH:
        return workflow_id[len("contact-") : -(CONTACT_KEY_LENGTH + 1)]
    return None


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


def reply_message_id(account: str, key: str, body_digest: str, return_address: str) -> str:
    """A reply from the built-in interface: the same text to the same contact is one reply."""
    return f"<ace.{key[:32]}.reply.{body_digest[:16]}.{account}@{mail_domain(return_address)}>"


def work_item_message_id(account: str, key: str, return_address: str) -> str:
    return f"<ace.{key[:32]}.workitem.{account}@{mail_domain(return_address)}>"


def forward_message_id(account: str, key: str, mode: str, digest: str, return_address: str) -> str:
    """A forward (its Message-ID) or a redirect (its Resent-Message-ID) of a contact's email:
    the same request (mode, address, note) for the same contact is one message."""
    return f"<ace.{key[:32]}.{mode}.{digest[:16]}.{account}@{mail_domain(return_address)}>"


def ledger_workflow_id(account: str) -> str:
    return f"autoreply-ledger-{account}"


def queue_workflow_id(queue: str) -> str:
    return f"queue-{queue}"


def agent_workflow_id(agent_id: str) -> str:
    return f"agent-{agent_id}"


def contact_key(contact_id: str, account: str) -> str:
    """The key part of a contact's id (what its reference and our Message-IDs are made of)."""
    return contact_id.removeprefix(f"contact-{account}-")


_SENT_AS = {
    "autoreply": "autoreply",
    "resent": "delivery",
    "reply": "reply",
    "workitem": "workitem",
    "forward": "forward",
    "redirect": "forward",
}


def contact_of_own_message_id(message_id: str, account: str) -> str | None:
    """The contact whose automatic reply, delivery, built-in reply or forward this account
    sent under `message_id`."""
    own = own_message(message_id, account)
    return own[0] if own else None


def own_message(message_id: str, account: str) -> tuple[str, str] | None:
    """(contact id, what it was sent as: autoreply, delivery, reply, workitem or forward) of a
    Message-ID this account gave one of its own messages; None for any other."""
    kinds = r"(autoreply|resent\..+|reply\.[0-9a-f]+|workitem|(?:forward|redirect)\.[0-9a-f]+)"
    pattern = rf"<ace\.([0-9a-f]{{20,64}})\.{kinds}\.{re.escape(account)}@[^>]*>"
    match = re.fullmatch(pattern, message_id.strip())
    if match is None:
        return None
    sent_as = _SENT_AS[match.group(2).partition(".")[0]]
    return contact_workflow_id(account, match.group(1)), sent_as

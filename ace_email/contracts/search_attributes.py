"""Custom search attributes that make contacts and failing mailboxes findable in the Web UI.

They are also how ace-email finds an open contact for a follow-up (reference, Message-ID,
sender), so every one of them is registered by `starter.py sync`. A namespace on SQL
visibility (the dev server among them) takes at most ten keyword attributes: agents show
their presence in `AceStatus` rather than in an eleventh.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.message import MessageRef

STATUS = SearchAttributeKey.for_keyword("AceStatus")
ACCOUNT = SearchAttributeKey.for_keyword("AceAccount")
QUEUE = SearchAttributeKey.for_keyword("AceQueue")
AGENT = SearchAttributeKey.for_keyword("AceAgent")
REFERENCE = SearchAttributeKey.for_keyword("AceReference")
MESSAGE_ID = SearchAttributeKey.for_keyword("AceMessageId")
SENDER = SearchAttributeKey.for_keyword("AceSender")
CATEGORY = SearchAttributeKey.for_keyword("AceCategory")
PRIORITY = SearchAttributeKey.for_int("AcePriority")
MAILBOX_HEALTH = SearchAttributeKey.for_keyword("AceMailboxHealth")
CHANNEL = SearchAttributeKey.for_keyword("AceChannel")
PRESENCE = STATUS

ALL = (
    STATUS,
    ACCOUNT,
    QUEUE,
    AGENT,
    REFERENCE,
    MESSAGE_ID,
    SENDER,
    CATEGORY,
    PRIORITY,
    MAILBOX_HEALTH,
    CHANNEL,
)


def new_contact(account: str, queue: str, ref: MessageRef) -> TypedSearchAttributes:
    """The search attributes an email's contact starts with."""
    pairs: list[SearchAttributePair[str]] = [
        SearchAttributePair(STATUS, ContactStatus.RECEIVED.value),
        SearchAttributePair(ACCOUNT, account),
        SearchAttributePair(QUEUE, queue),
        SearchAttributePair(REFERENCE, ids.contact_reference(ref.key)),
    ]
    if ref.message_id:
        pairs.append(SearchAttributePair(MESSAGE_ID, ref.message_id[:500]))
    return TypedSearchAttributes(pairs)

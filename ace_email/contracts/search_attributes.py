"""Custom search attributes that make contacts and failing mailboxes findable in the Web UI.

They are also how ace-email finds an open contact for a follow-up (reference, Message-ID,
sender), so every one of them is registered by `starter.py sync`. A namespace on SQL
visibility (the dev server among them) takes at most ten keyword attributes: agents show
their presence in `AceStatus` rather than in an eleventh, and a contact's extracted values
are a keyword list (`AceData`, "key=value" each).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

from ace_email.contracts import ids
from ace_email.contracts.base import Channel
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.message import Analysis, MessageRef, Routing

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
DATA = SearchAttributeKey.for_keyword_list("AceData")
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
    DATA,
)

DATA_KEYWORDS = 20


def type_name(key: SearchAttributeKey[Any]) -> str:
    """The attribute's type as `temporal server start-dev --search-attribute` spells it."""
    kind = key.indexed_value_type
    if kind == SearchAttributeIndexedValueType.INT:
        return "Int"
    if kind == SearchAttributeIndexedValueType.KEYWORD_LIST:
        return "KeywordList"
    return "Keyword"


def data_keywords(data: dict[str, str]) -> list[str]:
    """A contact's extracted values as `AceData` keywords, e.g. "order_id=12345": findable
    with `AceData = "order_id=12345"` in the Web UI or `starter.py contacts --query`."""
    return [f"{key}={value}"[:200] for key, value in list(data.items())[:DATA_KEYWORDS]]


def new_contact(
    account: str,
    queue: str,
    ref: MessageRef,
    analysis: Analysis | None = None,
    routing: Routing | None = None,
) -> TypedSearchAttributes:
    """The search attributes an email's contact starts with; with the poll's analysis, all
    that it tells (so the contact need not set them one by one)."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(STATUS, ContactStatus.RECEIVED.value),
        SearchAttributePair(ACCOUNT, account),
        SearchAttributePair(QUEUE, routing.queue if routing else queue),
        SearchAttributePair(REFERENCE, ids.contact_reference(ref.key)),
    ]
    if ref.message_id:
        pairs.append(SearchAttributePair(MESSAGE_ID, ref.message_id[:500]))
    if analysis is not None:
        pairs.append(SearchAttributePair(SENDER, (analysis.reply_address or "").lower()[:200]))
        pairs.append(SearchAttributePair(CHANNEL, Channel.EMAIL.value))
    if routing is not None:
        pairs.append(SearchAttributePair(PRIORITY, routing.priority))
        if routing.category:
            pairs.append(SearchAttributePair(CATEGORY, routing.category))
    if analysis is not None and analysis.data:
        pairs.append(SearchAttributePair(DATA, data_keywords(analysis.data)))
    return TypedSearchAttributes(pairs)

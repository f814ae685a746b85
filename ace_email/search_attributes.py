"""Custom search attributes that make contacts findable in the Temporal Web UI."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

STATUS = SearchAttributeKey.for_keyword("AceStatus")
ACCOUNT = SearchAttributeKey.for_keyword("AceAccount")
QUEUE = SearchAttributeKey.for_keyword("AceQueue")
AGENT = SearchAttributeKey.for_keyword("AceAgent")

ALL = (STATUS, ACCOUNT, QUEUE, AGENT)

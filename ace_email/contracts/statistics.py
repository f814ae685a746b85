"""One event of a contact's life, as the statistics store keeps it: who, where and when, never
what was written."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import Field, field_validator

from ace_email.contracts.base import Channel, Model

KEY_LIMIT = 200
DETAIL_LIMIT = 200


class StatEventKind(StrEnum):
    """What happened to a contact."""

    RECEIVED = "received"
    QUARANTINED = "quarantined"
    AUTO_REPLY_SENT = "auto_reply_sent"
    AUTO_REPLY_SUPPRESSED = "auto_reply_suppressed"
    QUEUED = "queued"
    ROUTED = "routed"
    DELIVERED = "delivered"
    ASSIGNED = "assigned"
    CLOSED = "closed"
    JOINED = "joined"


class StatEvent(Model):
    """One event; (contact_id, event, seq) is its key, so recording it again changes nothing.

    `seq` tells apart the repeats of an event that may happen more than once (routed a second
    time after a requeue): the recorder derives it deterministically, never from a clock."""

    contact_id: str = Field(min_length=1, max_length=KEY_LIMIT)
    event: StatEventKind
    seq: int = Field(default=0, ge=0)
    at: datetime
    account: str = Field(default="", max_length=KEY_LIMIT)
    queue: str = Field(default="", max_length=KEY_LIMIT)
    agent: str = Field(default="", max_length=KEY_LIMIT)
    channel: Channel = Channel.EMAIL
    detail: str = Field(default="", max_length=DETAIL_LIMIT)
    sender: str | None = Field(default=None, max_length=320)

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone")
        return value.astimezone(UTC)

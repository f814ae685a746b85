"""What every contract shares: the model base that crosses into workflow history, the limits
of what a summary holds, and the digest that tells a changed snapshot from an unchanged one.

Nothing in a contract ever holds a message body: workflows carry references (claim checks) to
messages that stay on the mail server, and small summaries of them.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

SUMMARY_TEXT_LIMIT = 200
LIST_LIMIT = 50


class Channel(StrEnum):
    """How a contact reached us. Only email may ever be resent to an agent's own mailbox."""

    EMAIL = "email"
    WORKITEM = "workitem"
    SOCIAL = "social"


class Model(BaseModel):
    """What crosses into workflow history. Fields are only ever added, with defaults, and
    unknown ones are ignored, so old and new workers read each other's payloads during a
    rolling upgrade."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def policy_digest(policy: BaseModel) -> str:
    """A short fingerprint of a policy (an account's, a queue's, an agent's): the registry
    compares it to the running workflow's memo to reconfigure."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:16]


def format_duration(value: timedelta) -> str:
    """A duration as people read it: 45 s, 3 min 20 s, 2 h 5 min, 3 d 4 h."""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{max(value.total_seconds(), 0):.3g} s" if seconds < 10 else f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"

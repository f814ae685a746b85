"""A known day of contacts for the statistics store, and the exact figures it must give, on
SQLite and on PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ace_email.contracts.base import Channel
from ace_email.contracts.statistics import StatEvent, StatEventKind

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SINCE = datetime(2026, 12, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 2, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
PROMISES = {"support": 10.0, "billing": 30.0}


def _event(
    contact: str, kind: StatEventKind, minutes: float, seq: int = 0, **fields: Any
) -> StatEvent:
    return StatEvent(
        contact_id=contact,
        event=kind,
        seq=seq,
        at=T0 + timedelta(minutes=minutes),
        **fields,
    )


K = StatEventKind
SCENARIO: list[StatEvent] = [
    # answered within the promise: 2 minutes' wait, 10 minutes' handling
    _event("c1", K.RECEIVED, 0, account="support", sender="anna@example.com"),
    _event("c1", K.AUTO_REPLY_SENT, 0),
    _event("c1", K.QUEUED, 0, queue="support"),
    _event("c1", K.ROUTED, 2, queue="support", agent="ann"),
    _event("c1", K.DELIVERED, 2, queue="support", agent="ann"),
    _event("c1", K.CLOSED, 12, queue="support", agent="ann"),
    # answered late: 20 minutes' wait, 20 minutes' handling
    _event("c2", K.RECEIVED, 1, account="support", sender="bert@example.com"),
    _event("c2", K.AUTO_REPLY_SUPPRESSED, 1, detail="bulk"),
    _event("c2", K.QUEUED, 1, queue="support"),
    _event("c2", K.ROUTED, 21, queue="support", agent="bob"),
    _event("c2", K.DELIVERED, 21, queue="support", agent="bob"),
    _event("c2", K.CLOSED, 41, queue="support", agent="bob"),
    # quarantined: never queued
    _event("c3", K.RECEIVED, 2, account="support"),
    _event("c3", K.QUARANTINED, 2, account="support", detail="spam"),
    # still waiting, past the promise
    _event("c4", K.RECEIVED, 3, account="support"),
    _event("c4", K.QUEUED, 3, queue="support"),
    # a work item: with ann after 1 minute, requeued, closed by bob
    _event("c5", K.RECEIVED, 5, account="sales", channel=Channel.WORKITEM),
    _event("c5", K.QUEUED, 5, queue="billing"),
    _event("c5", K.ROUTED, 6, queue="billing", agent="ann"),
    _event("c5", K.DELIVERED, 6, queue="billing", agent="ann"),
    _event("c5", K.QUEUED, 10, seq=1, queue="billing"),
    _event("c5", K.ROUTED, 15, seq=1, queue="billing", agent="bob"),
    _event("c5", K.DELIVERED, 15, seq=1, queue="billing", agent="bob"),
    _event("c5", K.CLOSED, 45, queue="billing", agent="bob"),
    # received two days before the window, closed inside it: 174540 s handled
    _event("c6", K.RECEIVED, -2 * 24 * 60, account="support"),
    _event("c6", K.QUEUED, -2 * 24 * 60, queue="support"),
    _event("c6", K.ROUTED, -2 * 24 * 60 + 1, queue="support", agent="ann"),
    _event("c6", K.DELIVERED, -2 * 24 * 60 + 1, queue="support", agent="ann"),
    _event("c6", K.CLOSED, 30, queue="support", agent="ann"),
    # joined to another contact before anyone took it
    _event("c8", K.RECEIVED, 7, account="support"),
    _event("c8", K.QUEUED, 7, queue="support"),
    _event("c8", K.JOINED, 8, queue="support"),
]

ZERO = {
    "received": 0,
    "quarantined": 0,
    "auto_replies_sent": 0,
    "auto_replies_suppressed": 0,
    "routed": 0,
    "delivered": 0,
    "closed": 0,
    "waiting_now": 0,
}
SUPPORT = {
    **ZERO,
    "received": 4,
    "auto_replies_sent": 1,
    "auto_replies_suppressed": 1,
    "routed": 2,
    "delivered": 2,
    "closed": 3,
    "waiting_now": 1,
    "wait_p50_seconds": 660.0,
    "wait_p90_seconds": 1092.0,
    "handling_p50_seconds": 1200.0,
    "handling_p90_seconds": 139872.0,  # 1200 + 0.8 * (174540 - 1200)
    "answered_within_share": 0.3333,
}
BILLING = {
    **ZERO,
    "received": 1,
    "routed": 2,
    "delivered": 2,
    "closed": 1,
    "wait_p50_seconds": 60.0,
    "wait_p90_seconds": 60.0,
    "handling_p50_seconds": 2340.0,
    "handling_p90_seconds": 2340.0,
    "answered_within_share": 1.0,
}
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "queues": [{"queue": "billing", **BILLING}, {"queue": "support", **SUPPORT}],
    "agents": [
        {
            "agent": "ann",
            **ZERO,
            "routed": 2,
            "delivered": 2,
            "closed": 2,
            "wait_p50_seconds": 90.0,
            "wait_p90_seconds": 114.0,
            "handling_p50_seconds": 87570.0,
            "handling_p90_seconds": 157146.0,
            "answered_within_share": 1.0,
        },
        {
            "agent": "bob",
            **ZERO,
            "routed": 2,
            "delivered": 2,
            "closed": 2,
            "wait_p50_seconds": 1200.0,
            "wait_p90_seconds": 1200.0,
            "handling_p50_seconds": 1770.0,
            "handling_p90_seconds": 2226.0,
            "answered_within_share": 0.0,
        },
    ],
    "accounts": [
        {"account": "sales", **BILLING},
        {"account": "support", **SUPPORT, "received": 5, "quarantined": 1},
    ],
}

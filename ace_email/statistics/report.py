"""The figures of the `stats` command, computed from contacts' events: counts per account, queue
and agent, wait and handling times, and the share answered within the queue's promise.

Every count is of events inside [since, until). A wait (received to the first delivery to or
assignment of an agent) counts when the contact reached the agent inside the window; a handling
time (that moment to the close, the closing agent's) when the contact was closed inside it.
Percentiles interpolate linearly between the two nearest values, as numpy's default does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from ace_email.contracts.statistics import StatEvent, StatEventKind

COUNTED: dict[StatEventKind, str] = {
    StatEventKind.RECEIVED: "received",
    StatEventKind.QUARANTINED: "quarantined",
    StatEventKind.AUTO_REPLY_SENT: "auto_replies_sent",
    StatEventKind.AUTO_REPLY_SUPPRESSED: "auto_replies_suppressed",
    StatEventKind.ROUTED: "routed",
    StatEventKind.DELIVERED: "delivered",
    StatEventKind.CLOSED: "closed",
}
WITH_AGENT = frozenset({StatEventKind.DELIVERED, StatEventKind.ASSIGNED})
QUEUE_STATE = frozenset(
    {
        StatEventKind.QUEUED,
        StatEventKind.ROUTED,
        StatEventKind.DELIVERED,
        StatEventKind.ASSIGNED,
        StatEventKind.CLOSED,
        StatEventKind.JOINED,
    }
)
ENDED_UNANSWERED = frozenset(
    {StatEventKind.QUARANTINED, StatEventKind.CLOSED, StatEventKind.JOINED}
)


class Figures(BaseModel):
    """One row of a section; serialised with its name first."""

    KEY: ClassVar[str] = "name"

    name: str
    received: int = 0
    quarantined: int = 0
    auto_replies_sent: int = 0
    auto_replies_suppressed: int = 0
    routed: int = 0
    delivered: int = 0
    closed: int = 0
    waiting_now: int = 0
    wait_p50_seconds: float | None = None
    wait_p90_seconds: float | None = None
    handling_p50_seconds: float | None = None
    handling_p90_seconds: float | None = None
    answered_within_share: float | None = None

    @model_serializer(mode="wrap")
    def _named(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {self.KEY: dumped.pop("name"), **dumped}


class AccountFigures(Figures):
    """An account's row."""

    KEY: ClassVar[str] = "account"


class QueueFigures(Figures):
    """A queue's row."""

    KEY: ClassVar[str] = "queue"


class AgentFigures(Figures):
    """An agent's row."""

    KEY: ClassVar[str] = "agent"


class StatsReport(BaseModel):
    """The figures of a window, per queue, agent and account."""

    since: datetime
    until: datetime
    queues: list[QueueFigures] = []
    agents: list[AgentFigures] = []
    accounts: list[AccountFigures] = []

    def sections(self) -> dict[str, Sequence[Figures]]:
        """The sections in the order they are shown."""
        return {"queues": self.queues, "agents": self.agents, "accounts": self.accounts}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th quantile (0..1), interpolated linearly; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
    return round(value, 3)


@dataclass
class _Tally:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    waits: list[float] = field(default_factory=list)
    handlings: list[float] = field(default_factory=list)
    answered: int = 0
    missed: int = 0

    def figures(self, kind: type[Figures], name: str) -> Figures:
        share = None
        if self.answered + self.missed:
            share = round(self.answered / (self.answered + self.missed), 4)
        return kind(
            name=name,
            **self.counts,
            wait_p50_seconds=percentile(self.waits, 0.5),
            wait_p90_seconds=percentile(self.waits, 0.9),
            handling_p50_seconds=percentile(self.handlings, 0.5),
            handling_p90_seconds=percentile(self.handlings, 0.9),
            answered_within_share=share,
        )


@dataclass
class _Sections:
    accounts: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    queues: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))
    agents: dict[str, _Tally] = field(default_factory=lambda: defaultdict(_Tally))

    def tallies(self, account: str, queue: str, agent: str) -> Iterable[_Tally]:
        if account:
            yield self.accounts[account]
        if queue:
            yield self.queues[queue]
        if agent:
            yield self.agents[agent]


def _first(values: Iterable[str]) -> str:
    return next((value for value in values if value), "")


def compute(
    events: Iterable[StatEvent],
    since: datetime,
    until: datetime,
    promises: Mapping[str, float],
    horizon: datetime,
) -> StatsReport:
    """The report of [since, until) from every event of the contacts concerned.

    `promises` maps a queue to its answer_within_minutes; `horizon` is the moment a wait still
    open is measured to (now, or `until` if that is earlier)."""
    by_contact: dict[str, list[StatEvent]] = defaultdict(list)
    for event in events:
        by_contact[event.contact_id].append(event)
    sections = _Sections()
    for contact_events in by_contact.values():
        contact_events.sort(key=lambda e: (e.at, list(StatEventKind).index(e.event), e.seq))
        _tally_contact(contact_events, sections, since, until, promises, horizon)
    return StatsReport(
        since=since,
        until=until,
        queues=[
            tally.figures(QueueFigures, name) for name, tally in sorted(sections.queues.items())
        ],
        agents=[
            tally.figures(AgentFigures, name) for name, tally in sorted(sections.agents.items())
        ],
        accounts=[
            tally.figures(AccountFigures, name) for name, tally in sorted(sections.accounts.items())
        ],
    )


def _tally_contact(
    events: list[StatEvent],
    sections: _Sections,
    since: datetime,
    until: datetime,
    promises: Mapping[str, float],
    horizon: datetime,
) -> None:
    account = _first(e.account for e in events)
    queue = _first(e.queue for e in events)

    def inside(event: StatEvent) -> bool:
        return since <= event.at < until

    for event in events:
        name = COUNTED.get(event.event)
        if name is not None and inside(event):
            for tally in sections.tallies(
                event.account or account, event.queue or queue, event.agent
            ):
                tally.counts[name] += 1
    last_state = next((e for e in reversed(events) if e.event in QUEUE_STATE), None)
    if last_state is not None and last_state.event is StatEventKind.QUEUED:
        for tally in sections.tallies(
            last_state.account or account, last_state.queue or queue, last_state.agent
        ):
            tally.counts["waiting_now"] += 1

    received = next((e for e in events if e.event is StatEventKind.RECEIVED), None)
    reached = next((e for e in events if e.event in WITH_AGENT), None)
    if received is None:
        return
    if reached is not None:
        where = (reached.account or account, reached.queue or queue, reached.agent)
        wait = (reached.at - received.at).total_seconds()
        if inside(reached):
            for tally in sections.tallies(*where):
                tally.waits.append(wait)
        closed = next(
            (e for e in events if e.event is StatEventKind.CLOSED and e.at >= reached.at), None
        )
        if closed is not None and inside(closed):
            handling = (closed.at - reached.at).total_seconds()
            closer = closed.agent or reached.agent
            for tally in sections.tallies(where[0], where[1], closer):
                tally.handlings.append(handling)
    promise = promises.get(reached.queue or queue if reached else queue)
    if promise is None or not inside(received):
        return
    limit = promise * 60
    if reached is not None:
        answered = (reached.at - received.at).total_seconds() <= limit
    elif any(e.event in ENDED_UNANSWERED for e in events):
        return
    elif (horizon - received.at).total_seconds() > limit:
        answered = False
    else:
        return
    agent = reached.agent if reached else ""
    for tally in sections.tallies(account, reached.queue or queue if reached else queue, agent):
        if answered:
            tally.answered += 1
        else:
            tally.missed += 1

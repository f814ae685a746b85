"""Routing decisions as pure functions: a queue's order, which agent takes which contact, an
agent's free places, and how a contact reaches its agent.

The queue and agent workflows call these; they never read a clock (the caller passes `now`),
so they are deterministic in a workflow and proven by plain unit tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum

from ace_email.contracts.base import Channel
from ace_email.contracts.queues import AgentPolicy, AgentView, Held, QueuePolicy, Waiting


class DeliveryMode(StrEnum):
    EXTERNAL = "external"
    BUILT_IN = "built-in"


def delivery_mode(channel: Channel, agent_email: str | None) -> DeliveryMode:
    """Only an email goes out to an agent's own mailbox, and only to an agent who has one;
    social contacts and work items are handled in the built-in interface by whoever takes them."""
    if channel is Channel.EMAIL and agent_email:
        return DeliveryMode.EXTERNAL
    return DeliveryMode.BUILT_IN


def effective_priority(entry: Waiting, policy: QueuePolicy, now: datetime) -> int:
    """The priority after escalation: every `escalate_after` waiting in this queue adds the
    step, up to `escalate_max` (never below the contact's own priority)."""
    after = policy.escalate_after_seconds
    if not after:
        return entry.priority
    steps = max(int((now - entry.entered_at).total_seconds() // after), 0)
    raised = entry.priority + steps * policy.escalate_step
    if policy.escalate_max is not None:
        return min(raised, max(policy.escalate_max, entry.priority))
    return raised


def queue_order(entries: Iterable[Waiting], policy: QueuePolicy, now: datetime) -> list[Waiting]:
    """Highest (escalated) priority first; within a priority, the longest waiting first."""
    return sorted(
        entries,
        key=lambda e: (-effective_priority(e, policy, now), e.waiting_since, e.contact_id),
    )


def overflow_due(entry: Waiting, policy: QueuePolicy, now: datetime) -> bool:
    after = policy.overflow_after_seconds
    return bool(after and policy.overflow_to) and (now - entry.entered_at).total_seconds() >= (
        after or 0
    )


def load_by_channel(held: Iterable[Held]) -> dict[Channel, int]:
    return dict(Counter(h.channel for h in held))


def free_places(policy: AgentPolicy, held: Sequence[Held]) -> tuple[int, dict[Channel, int]]:
    """Places left in all, and for each channel with its own limit (never below zero)."""
    load = load_by_channel(held)
    by_channel = {
        channel: max(limit - load.get(channel, 0), 0)
        for channel, limit in policy.channel_capacity.items()
    }
    return max(policy.capacity - len(held), 0), by_channel


def has_place(free: int, free_by_channel: dict[Channel, int], channel: Channel) -> bool:
    return free > 0 and free_by_channel.get(channel, 1) > 0


def serves(view: AgentView, entry: Waiting, queue: str) -> bool:
    """Whether this agent, as the queue knows it, could take this kind of contact now."""
    return (
        view.ready
        and queue in view.queues
        and has_place(view.free, view.free_by_channel, entry.channel)
        and (not entry.skills or set(entry.skills) <= set(view.skills))
    )


def takes(view: AgentView, entry: Waiting, queue: str) -> bool:
    """`serves`, and the contact was not offered to this agent before."""
    return serves(view, entry, queue) and view.agent_id not in entry.excluded


def _took(view: AgentView, channel: Channel, now: datetime) -> AgentView:
    by_channel = dict(view.free_by_channel)
    if channel in by_channel:
        by_channel[channel] -= 1
    return view.model_copy(
        update={"free": view.free - 1, "free_by_channel": by_channel, "idle_since": now}
    )


def _idle_order(view: AgentView) -> tuple[datetime, str]:
    return (view.idle_since or datetime.min.replace(tzinfo=UTC), view.agent_id)


def match(
    entries: Iterable[Waiting], views: Iterable[AgentView], policy: QueuePolicy, now: datetime
) -> list[tuple[Waiting, AgentView]]:
    """Who takes what now: contacts in queue order, each to the longest-idle agent who can
    take it. Each decision comes with the agent as it is after taking the contact (one place
    fewer, idle since now), so the next contact goes to the next longest-idle agent."""
    available = {v.agent_id: v for v in views if v.ready and v.free > 0 and policy.name in v.queues}
    waiting = list(entries)
    if not available or not waiting:
        return []
    decisions: list[tuple[Waiting, AgentView]] = []
    nobody_serves: set[tuple[Channel, frozenset[str]]] = set()
    for entry in queue_order(waiting, policy, now):
        if not available:
            break
        kind = (entry.channel, frozenset(entry.skills))
        if kind in nobody_serves:
            continue
        able = [v for v in available.values() if serves(v, entry, policy.name)]
        candidates = [v for v in able if v.agent_id not in entry.excluded]
        if not candidates:
            if not able:
                nobody_serves.add(kind)
            continue
        chosen = min(candidates, key=_idle_order)
        after = _took(chosen, entry.channel, now)
        decisions.append((entry, after))
        if after.free > 0:
            available[chosen.agent_id] = after
        else:
            del available[chosen.agent_id]
    return decisions

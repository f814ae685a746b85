"""The routing decisions as pure functions: order, escalation, overflow, matching, capacity,
and how a contact reaches its agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ace_email.contracts.base import Channel
from ace_email.contracts.queues import AgentPolicy, AgentView, Held, QueuePolicy, Waiting
from ace_email.decisions.matching import (
    DeliveryMode,
    delivery_mode,
    effective_priority,
    free_places,
    match,
    overflow_due,
    queue_order,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
QUEUE = QueuePolicy(name="support")


def waiting(
    name: str,
    *,
    priority: int = 0,
    age: float = 0.0,
    skills: list[str] | None = None,
    channel: Channel = Channel.EMAIL,
    excluded: list[str] | None = None,
) -> Waiting:
    since = NOW - timedelta(seconds=age)
    return Waiting(
        contact_id=name,
        round=1,
        priority=priority,
        waiting_since=since,
        entered_at=since,
        skills=skills or [],
        channel=channel,
        excluded=excluded or [],
    )


def agent(
    name: str,
    *,
    free: int = 1,
    idle: float = 0.0,
    skills: list[str] | None = None,
    ready: bool = True,
    by_channel: dict[Channel, int] | None = None,
    queues: list[str] | None = None,
) -> AgentView:
    return AgentView(
        agent_id=name,
        ready=ready,
        free=free,
        free_by_channel=by_channel or {},
        skills=skills or [],
        queues=queues or ["support"],
        idle_since=NOW - timedelta(seconds=idle),
    )


def names(decisions: list[tuple[Waiting, AgentView]]) -> list[tuple[str, str]]:
    return [(entry.contact_id, view.agent_id) for entry, view in decisions]


def test_the_queue_orders_by_priority_then_by_the_longest_wait() -> None:
    entries = [
        waiting("new-low", age=1),
        waiting("old-low", age=50),
        waiting("new-high", priority=3, age=2),
        waiting("old-high", priority=3, age=40),
    ]
    order = [e.contact_id for e in queue_order(entries, QUEUE, NOW)]
    assert order == ["old-high", "new-high", "old-low", "new-low"]


def test_priority_rises_by_the_step_for_every_period_waited_up_to_the_cap() -> None:
    policy = QUEUE.model_copy(
        update={"escalate_after_seconds": 60.0, "escalate_step": 2, "escalate_max": 5}
    )
    assert effective_priority(waiting("a", age=59), policy, NOW) == 0
    assert effective_priority(waiting("a", age=60), policy, NOW) == 2
    assert effective_priority(waiting("a", age=150), policy, NOW) == 4
    assert effective_priority(waiting("a", age=3600), policy, NOW) == 5
    assert effective_priority(waiting("a", priority=9, age=3600), policy, NOW) == 9
    order = queue_order([waiting("urgent", priority=3), waiting("patient", age=121)], policy, NOW)
    assert [e.contact_id for e in order] == ["patient", "urgent"]


def test_a_contact_overflows_once_it_has_waited_long_enough() -> None:
    policy = QUEUE.model_copy(update={"overflow_after_seconds": 300.0, "overflow_to": "billing"})
    assert not overflow_due(waiting("a", age=299), policy, NOW)
    assert overflow_due(waiting("a", age=300), policy, NOW)
    assert not overflow_due(waiting("a", age=9999), QUEUE, NOW)


def test_each_contact_goes_to_the_longest_idle_agent_who_can_take_it() -> None:
    decisions = match(
        [waiting("first", age=30), waiting("second", age=20), waiting("third", age=10)],
        [agent("busy-lately", idle=5), agent("idle-long", idle=500, free=2)],
        QUEUE,
        NOW,
    )
    assert names(decisions) == [
        ("first", "idle-long"),
        ("second", "busy-lately"),
        ("third", "idle-long"),
    ]
    assert decisions[-1][1].free == 0 and decisions[-1][1].idle_since == NOW


def test_skills_channels_exclusions_presence_and_queues_limit_who_takes_what() -> None:
    decisions = match(
        [
            waiting("invoice", skills=["invoices"], age=50),
            waiting("declined-by-ann", excluded=["ann"], age=40),
            waiting("tweet", channel=Channel.SOCIAL, age=30),
            waiting("plain", age=10),
        ],
        [
            agent("ann", free=3, by_channel={Channel.SOCIAL: 0}, idle=100),
            agent("sleepy", ready=False, idle=900, skills=["invoices"]),
            agent("elsewhere", queues=["billing"], idle=800),
        ],
        QUEUE,
        NOW,
    )
    assert names(decisions) == [("plain", "ann")]


def test_nothing_is_decided_without_a_free_agent() -> None:
    assert match([waiting("a")], [agent("ann", free=0)], QUEUE, NOW) == []
    assert match([], [agent("ann")], QUEUE, NOW) == []


def test_free_places_count_the_whole_capacity_and_each_limited_channel() -> None:
    policy = AgentPolicy(id="ann", capacity=3, channel_capacity={Channel.SOCIAL: 1})
    held = [
        Held(contact_id="a", channel=Channel.SOCIAL, since=NOW),
        Held(contact_id="b", channel=Channel.EMAIL, since=NOW),
    ]
    assert free_places(policy, held) == (1, {Channel.SOCIAL: 0})
    assert free_places(policy, [*held, *held]) == (0, {Channel.SOCIAL: 0})


def test_only_an_email_ever_goes_to_an_agents_own_mailbox() -> None:
    assert delivery_mode(Channel.EMAIL, "alice@example.com") is DeliveryMode.EXTERNAL
    assert delivery_mode(Channel.EMAIL, None) is DeliveryMode.BUILT_IN
    assert delivery_mode(Channel.WORKITEM, "alice@example.com") is DeliveryMode.BUILT_IN
    assert delivery_mode(Channel.SOCIAL, "alice@example.com") is DeliveryMode.BUILT_IN


def test_waiting_contacts_pack_small_and_unpack_the_same() -> None:
    from ace_email.contracts.queues import pack_waiting, unpack_waiting

    entries = [waiting(f"contact-support-{n:020x}", priority=n % 3, age=n) for n in range(2000)]
    packed = pack_waiting(entries)
    assert unpack_waiting(packed) == entries
    assert unpack_waiting("") == []
    plain = sum(len(e.model_dump_json()) for e in entries)
    assert len(packed) < plain / 4

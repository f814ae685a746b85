"""Routing configuration: queues, agents and the return address a built-in reply needs; every
fault named with its place."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ace_email.config.settings import Settings
from ace_email.contracts.base import Channel


def config(
    *,
    queues: list[dict[str, Any]] | None = None,
    agents: list[dict[str, Any]] | None = None,
    return_address: str | None = "support@example.com",
    accounts: int = 1,
) -> dict[str, Any]:
    def account(n: int) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "name": f"acc{n}",
            "address": f"acc{n}@example.com",
            "queue": "support" if n == 0 else f"other{n}",
            "imap": {"host": "127.0.0.1", "username": "u", "password": "p", "security": "none"},
            "smtp": {"host": "127.0.0.1", "security": "none"},
        }
        if return_address is not None:
            fields["return_address"] = return_address
        return fields

    return {
        "queues": queues or [],
        "agents": agents or [],
        "accounts": [account(n) for n in range(accounts)],
    }


def problems(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate(document)
    return str(caught.value)


def test_an_account_needs_a_return_address_for_a_built_in_agent_or_a_work_item_queue() -> None:
    built_in = problems(config(agents=[{"id": "bob"}], return_address=None))
    assert (
        "accounts[0] (acc0).return_address: required, because agent 'bob' works in the "
        "built-in interface on queue 'support'" in built_in
    )
    web = problems(
        config(queues=[{"name": "support", "channels": ["email", "workitem"]}], return_address=None)
    )
    assert "queue 'support' takes workitem contacts" in web
    fine = Settings.model_validate(
        config(agents=[{"id": "alice", "email": "alice@example.com"}], return_address=None)
    )
    assert fine.accounts[0].return_address is None


def test_agents_name_known_queues_and_keep_channel_limits_within_capacity() -> None:
    unknown = problems(config(agents=[{"id": "ann", "queues": ["support", "billng"]}]))
    assert "agents[0] (ann).queues: unknown queue 'billng' (known: support)" in unknown
    over = problems(
        config(agents=[{"id": "ann", "capacity": 2, "channel_capacity": {"social": 3}}])
    )
    assert "channel_capacity.social: 3 is more than capacity 2" in over
    assert "capacity" in problems(config(agents=[{"id": "ann", "capacity": 0}]))


def test_overflow_names_a_known_other_queue_and_never_goes_round() -> None:
    assert "give both overflow_after_minutes and overflow_to" in problems(
        config(queues=[{"name": "support", "overflow_after_minutes": 5}])
    )
    assert "cannot overflow to itself" in problems(
        config(queues=[{"name": "support", "overflow_after_minutes": 5, "overflow_to": "support"}])
    )
    assert "queues[0] (support).overflow_to: unknown queue 'nowhere'" in problems(
        config(queues=[{"name": "support", "overflow_after_minutes": 5, "overflow_to": "nowhere"}])
    )
    circle = problems(
        config(
            queues=[
                {"name": "support", "overflow_after_minutes": 5, "overflow_to": "billing"},
                {"name": "billing", "overflow_after_minutes": 5, "overflow_to": "support"},
            ]
        )
    )
    assert "overflow goes round: support -> billing -> support" in circle


def test_a_work_item_queue_needs_an_account_to_answer_for_it() -> None:
    orphan = problems(
        config(accounts=2, queues=[{"name": "forms", "channels": ["workitem"]}], agents=[])
    )
    assert "queues[0] (forms).account: no account sends this queue's replies; name one" in orphan
    named = Settings.model_validate(
        config(
            accounts=2,
            queues=[{"name": "forms", "channels": ["workitem"], "account": "acc1"}],
        )
    )
    assert named.account_for_queue("forms") is named.accounts[1]
    assert named.queue_settings("forms").channels == [Channel.WORKITEM]


def test_agents_serve_every_queue_unless_they_name_theirs() -> None:
    settings = Settings.model_validate(
        config(
            queues=[{"name": "billing"}],
            agents=[{"id": "ann"}, {"id": "ben", "queues": ["billing"], "skills": ["invoices"]}],
        )
    )
    ann, ben = (settings.agent_policy(a) for a in settings.agents)
    assert ann.queues == ["billing", "support"] and ann.capacity == 1
    assert ben.queues == ["billing"] and ben.skills == ["invoices"]
    assert [a.id for a in settings.agents_serving("support")] == ["ann"]
    assert settings.queue_policy("billing").overflow_to is None

"""Recorded histories replay against today's code: a change that would break workflows in
flight fails here, before a deploy. Histories of earlier versions stay (their names say which);
record today's with ACE_RECORD_HISTORIES=1 (see tests/recording.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    names = {p.stem for p in HISTORIES}
    assert any(n.startswith("contact") for n in names)
    assert {"mailbox_polling_before_health", "queue_routing", "agent_routed"} <= names
    assert {"contact_routed_delivered_closed", "contact_delivered_before_rules"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)

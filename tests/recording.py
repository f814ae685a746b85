"""Recording workflow histories for the replay test (tests/replay/test_replay.py).

Set ACE_RECORD_HISTORIES=1 and run the tests that call `record_history`: each writes the
history of a workflow it drove to tests/histories/<name>.json. Histories recorded by an
earlier version stay beside them, so a change that breaks workflows in flight fails there.
"""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import Client

HISTORIES = Path(__file__).parent / "histories"


async def record_history(client: Client, workflow_id: str, name: str) -> None:
    if not os.environ.get("ACE_RECORD_HISTORIES"):
        return
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())

"""Signals between ace-email's own workflows, sent straight from workflow code."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import FailureError


async def signal_if_running(workflow_id: str, signal: str, arg: Any) -> bool:
    """Signal another workflow; False where it is not running (a queue that has not started
    yet learns the same from its agents when it does, say)."""
    try:
        await workflow.get_external_workflow_handle(workflow_id).signal(signal, arg)
    except FailureError:
        return False
    return True

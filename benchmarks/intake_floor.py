"""The floor under intake on this machine: one parent workflow starting N trivial child
workflows, 100 at a time, as the poll loop starts contacts; each child sets one search
attribute and waits, as a queued contact does, and does nothing else: no mail server, no
activity. The clock stops when every child is seen waiting.

    .venv/bin/python benchmarks/intake_floor.py [--children 1000]

Starts its own Temporal dev server (tuned as in `dev.py run`); the worker runs in this process
with the same sandbox settings as `worker.py`. What it prints bounds what any design with one
child workflow per email can take in on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.worker import Worker

from ace_email.exiting import run_then_exit
from benchmarks.dev_server import start_dev_server
from benchmarks.floor_workflows import BATCH, StartingParent, WaitingChild
from benchmarks.machine import TUNED_SERVER, machine_line
from worker import SHARED_SANDBOX


async def main(children: int) -> None:
    env = await start_dev_server()
    try:
        async with Worker(
            env.client,
            task_queue="intake-floor",
            workflows=[StartingParent, WaitingChild],
            workflow_runner=SHARED_SANDBOX,
        ):
            began = time.monotonic()
            await env.client.execute_workflow(
                StartingParent.run, children, id="floor-parent", task_queue="intake-floor"
            )
            waiting = "WorkflowType='WaitingChild' AND AceStatus='queued'"
            while (await env.client.count_workflows(waiting)).count < children:
                await asyncio.sleep(0.1)
            seconds = time.monotonic() - began
    finally:
        await env.shutdown()
    print(machine_line(TUNED_SERVER, "worker in this process"))
    print(
        f"{children} trivial child workflows started by one parent, {BATCH} at a time, until "
        "every one waits: "
        f"{seconds:.1f} s, {children / seconds:,.1f} children/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--children", type=int, default=1000)
    args = parser.parse_args()
    run_then_exit(lambda: asyncio.run(main(args.children)))

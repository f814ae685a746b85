"""The workflows of benchmarks/intake_floor.py, in a module of their own: the sandbox imports a
workflow's module for every run, and a benchmark script's own set-up does not belong there."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import search_attributes as sa

BATCH = 100


@workflow.defn
class WaitingChild:
    @workflow.run
    async def run(self, n: int) -> None:
        workflow.upsert_search_attributes([sa.STATUS.value_set("queued")])
        await workflow.wait_condition(lambda: False)


@workflow.defn
class StartingParent:
    @workflow.run
    async def run(self, children: int) -> None:
        for first in range(0, children, BATCH):
            await asyncio.gather(
                *(
                    workflow.start_child_workflow(
                        WaitingChild.run,
                        n,
                        id=f"floor-child-{n}",
                        parent_close_policy=ParentClosePolicy.ABANDON,
                    )
                    for n in range(first, min(children, first + BATCH))
                )
            )

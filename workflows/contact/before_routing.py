"""The path of contacts begun before queues and agents routed them (ROUTING_PATCH is not in
their histories): they wait for an operator's `assign` and end when delivered."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ace_email.contracts import search_attributes as sa
    from ace_email.contracts.contact import (
        AssignRequest,
        ContactStatus,
    )
from workflows.contact.follow_ups import FollowUps


class BeforeRouting(FollowUps):
    """Waiting for `assign`, then delivery: as contacts ran before routing."""

    async def _serve_queue(self) -> None:
        while True:
            await workflow.wait_condition(
                lambda: self._assignment is not None or bool(self._duplicates)
            )
            await self._settle_duplicates()
            request = self._assignment
            if request is None:
                continue
            self._state.agent = request.agent_id
            self._state.agent_email = request.agent_email
            self._state.last_error = None
            workflow.upsert_search_attributes([sa.AGENT.value_set(request.agent_id)])
            if request.agent_email is None:
                self._set_status(ContactStatus.ASSIGNED)
                await workflow.wait_condition(lambda: self._closed or bool(self._duplicates))
                await self._settle_duplicates()
                if self._closed:
                    return
                continue
            if await self._deliver(request, request.agent_email):
                return

    async def _deliver(self, request: AssignRequest, agent_email: str) -> bool:
        self._set_status(ContactStatus.DELIVERING)
        archived = await self._deliver_message(self._ref, request.agent_id, agent_email)
        if archived is None:
            self._state.agent = None
            self._state.agent_email = None
            self._assignment = None
            workflow.upsert_search_attributes([sa.AGENT.value_unset()])
            self._set_status(ContactStatus.QUEUED)
            return False
        self._ref = archived
        self._state.message = archived
        self._state.last_error = None
        self._set_status(ContactStatus.DELIVERED)
        return True

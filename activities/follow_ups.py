"""Finding the open contact that a new email follows up, through Temporal's visibility."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.contact import ContactStatus, FollowUpQuery, FollowUpTarget

OPEN_WHILE_RUNNING = {
    ContactStatus.RECEIVED,
    ContactStatus.QUEUED,
    ContactStatus.DELIVERING,
    ContactStatus.ASSIGNED,
}
MESSAGE_IDS_LOOKED_UP = 20
_SAFE_QUERY_VALUE = str.maketrans("", "", "\"'\\")
_QUERYABLE = re.compile(r"<[\x21-\x7e]{1,250}>")


class FollowUpActivities:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    @activity.defn
    async def find_follow_up(self, query: FollowUpQuery) -> FollowUpTarget | None:
        """The open contact this email continues, if any.

        Tried in this order: a Message-ID that we gave one of our own messages (the customer
        answered our automatic reply or an agent's delivery), the [#REF] in the subject, then
        the customer's own thread (In-Reply-To / References naming an earlier email of the
        same sender). A contact is open while it runs, and when it was delivered to an agent
        within `within_days`; a joined email leads to the contact it joined.
        """
        for contact_id, matched_by in await self._candidates(query):
            target = await self._open_target(query, contact_id, matched_by, hops=2)
            if target is not None:
                return target
        return None

    async def _candidates(self, query: FollowUpQuery) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for message_id in query.message_ids:
            own = ids.contact_of_own_message_id(message_id, query.account)
            if own:
                found.append((own, f"our message {message_id}"))
        base = f'WorkflowType="ContactWorkflow" AND {sa.ACCOUNT.name}="{_safe(query.account)}"'
        if query.reference:
            for contact_id in await self._ids(
                f'{base} AND {sa.REFERENCE.name}="{_safe(query.reference)}"'
            ):
                found.append((contact_id, f"reference [#{query.reference}]"))
        thread = [
            m
            for m in query.message_ids[-MESSAGE_IDS_LOOKED_UP:]
            if _QUERYABLE.fullmatch(m) and _safe(m) == m
        ]
        if thread and query.sender:
            listed = ", ".join(f'"{m}"' for m in thread)
            for contact_id in await self._ids(
                f"{base} AND {sa.MESSAGE_ID.name} IN ({listed})"
                f' AND {sa.SENDER.name}="{_safe(query.sender.lower())}"'
            ):
                found.append((contact_id, "the customer's own thread"))
        return [(c, m) for c, m in dict(found).items() if c != query.contact_id]

    async def _ids(self, visibility_query: str) -> list[str]:
        """Contact ids a visibility query finds; none if the server cannot parse the query
        (odd characters in a customer's Message-ID must not wedge the contact)."""
        try:
            return [e.id async for e in self._client.list_workflows(visibility_query, limit=10)]
        except RPCError as err:
            if err.status != RPCStatusCode.INVALID_ARGUMENT:
                raise
            activity.logger.warning("follow-up lookup skipped: %s", err.message)
            return []

    async def _open_target(
        self, query: FollowUpQuery, contact_id: str, matched_by: str, hops: int
    ) -> FollowUpTarget | None:
        try:
            described = await self._client.get_workflow_handle(contact_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        status = _status(described)
        running = described.status == WorkflowExecutionStatus.RUNNING
        if status is ContactStatus.JOINED and hops > 0:
            joined_to = (await described.memo()).get("joined_to")
            if isinstance(joined_to, str) and joined_to != query.contact_id:
                return await self._open_target(query, joined_to, matched_by, hops - 1)
            return None
        agent = described.typed_search_attributes.get(sa.AGENT)
        if running and status in OPEN_WHILE_RUNNING:
            return FollowUpTarget(
                contact_id=contact_id,
                status=status,
                running=True,
                agent_id=agent,
                matched_by=matched_by,
            )
        closed_at = described.close_time or datetime.now(UTC)
        recent = datetime.now(UTC) - closed_at < timedelta(days=query.within_days)
        email = self._agent_email(agent) if agent else None
        if status is ContactStatus.DELIVERED and agent and email and recent:
            return FollowUpTarget(
                contact_id=contact_id,
                status=status,
                running=running,
                agent_id=agent,
                agent_email=email,
                matched_by=matched_by,
            )
        return None

    def _agent_email(self, agent_id: str) -> str | None:
        try:
            return self._settings.agent(agent_id).email
        except ConfigError:
            return None


def _status(described: WorkflowExecutionDescription) -> ContactStatus | None:
    value = described.typed_search_attributes.get(sa.STATUS)
    try:
        return ContactStatus(value) if value else None
    except ValueError:
        return None


def _safe(value: str) -> str:
    return value.translate(_SAFE_QUERY_VALUE)

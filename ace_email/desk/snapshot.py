"""One shared refresh for every open page: every `refresh_seconds` the desk asks the queues',
agents' and held contacts' workflows once, and every page and event stream reads that picture.
So a hundred open desks cost Temporal what one does."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from ace_email.config.settings import Settings
from ace_email.contracts.contact import ContactState
from ace_email.operations import agents_queues
from ace_email.operations.common import Refused, contact_state

log = logging.getLogger(__name__)


@dataclass
class Picture:
    """What the desk knows at one moment."""

    queues: list[dict[str, Any]] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    contacts: dict[str, ContactState] = field(default_factory=dict)
    taken_at: float = 0.0
    version: str = ""

    def agent(self, agent_id: str) -> dict[str, Any] | None:
        return next((row for row in self.agents if row["id"] == agent_id), None)

    def held_by(self, agent_id: str) -> list[ContactState]:
        row = self.agent(agent_id)
        ids = [*row["contacts"], *row["personal_waiting"]] if row else []
        return [self.contacts[c] for c in ids if c in self.contacts]


class Snapshot:
    """The refresh loop and its latest picture; `changed` wakes the event streams."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.picture = Picture()
        self.changed = asyncio.Condition()
        self.queries = 0
        self.refreshes = 0
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> Picture:
        queues, agents = await asyncio.gather(
            agents_queues.queues(self.client, self.settings),
            agents_queues.agents(self.client, self.settings),
        )
        held = [c for row in agents for c in (*row["contacts"], *row["personal_waiting"])]
        states = await asyncio.gather(*(self._state(c) for c in held))
        self.queries += 2 * len(queues) + len(agents) + len(held)
        self.refreshes += 1
        contacts = {s.id: s for s in states if s is not None}
        digest = hashlib.sha256(
            json.dumps(
                [queues, agents, {k: v.model_dump(mode="json") for k, v in contacts.items()}],
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:16]
        picture = Picture(queues, agents, contacts, time.time(), digest)
        previous, self.picture = self.picture.version, picture
        if digest != previous:
            async with self.changed:
                self.changed.notify_all()
        return picture

    async def _state(self, contact_id: str) -> ContactState | None:
        try:
            return await contact_state(self.client, contact_id)
        except (Refused, RPCError):
            return None

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop serves every page: it must outlive any fault
                log.warning("desk refresh failed: %s: %s", type(exc).__name__, exc)
            delay = self.settings.desk.refresh_seconds - (time.monotonic() - started)
            await asyncio.sleep(max(0.05, delay))

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait_for_change(self, version: str, timeout: float) -> str:
        """The next version after `version` (or the same after `timeout`)."""
        async with self.changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: self.picture.version != version), timeout
                )
        return self.picture.version

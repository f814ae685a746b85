"""Many contacts' messages to one workflow, sent as one: the signals into a queue stay few
however many contacts arrive at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Items for one receiver: the first goes out at once; those that arrive while a send is
    in flight go out together in the next. `add` returns once its item's send succeeded, and
    raises what the send raised (the caller's retry sends it again)."""

    def __init__(self, send: Callable[[list[T]], Awaitable[None]], most: int = 200) -> None:
        self._send = send
        self._most = most
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._sending: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_all())
        await done

    async def _send_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._most], self._pending[self._most :]
            try:
                await self._send([item for item, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

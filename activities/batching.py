"""Many contacts' messages to one workflow, sent as one: the signals into a queue and the
questions to an account's reply ledger stay few however many contacts arrive at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Items for one receiver, each with its own answer: the first goes out at once; those
    that arrive while a send is in flight go out together in the next. `ask` returns its
    item's answer once the send succeeded, and raises what the send raised (the caller's
    retry asks again). `send` answers each item of its batch, in order."""

    def __init__(self, send: Callable[[list[T]], Awaitable[list[R]]], most: int = 200) -> None:
        self._send = send
        self._most = most
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._sending: asyncio.Task[None] | None = None

    async def ask(self, item: T) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, answer))
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send_all())
        return await answer

    async def _send_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._most], self._pending[self._most :]
            try:
                answers = await self._send([item for item, _ in batch])
                if len(answers) != len(batch):
                    raise RuntimeError(f"{len(answers)} answers for {len(batch)} items")
            except Exception as exc:
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
            else:
                for (_, answer), value in zip(batch, answers, strict=True):
                    if not answer.done():
                        answer.set_result(value)


class Coalescer(Generic[T]):
    """A `Batcher` for items that need no answer: `add` returns once its item went out."""

    def __init__(self, send: Callable[[list[T]], Awaitable[None]], most: int = 200) -> None:
        async def send_all(items: list[T]) -> list[None]:
            await send(items)
            return [None] * len(items)

        self._batcher: Batcher[T, None] = Batcher(send_all, most)

    async def add(self, item: T) -> None:
        await self._batcher.ask(item)

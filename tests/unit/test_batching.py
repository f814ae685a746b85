"""Many contacts' entries into one queue go out as few signals."""

from __future__ import annotations

import asyncio

import pytest

from activities.batching import Batcher, Coalescer


async def test_what_arrives_during_a_send_goes_out_together_in_the_next() -> None:
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: list[int]) -> None:
        sent.append(items)
        await gate.wait()

    coalescer = Coalescer(send, most=3)
    first = asyncio.create_task(coalescer.add(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalescer.add(n)) for n in range(1, 6)]
    await asyncio.sleep(0)
    assert sent == [[0]]
    gate.set()
    await asyncio.gather(first, *rest)
    assert sent == [[0], [1, 2, 3], [4, 5]]


async def test_a_failed_send_fails_each_of_its_items_and_not_the_next() -> None:
    calls = 0

    async def send(items: list[str]) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise RuntimeError("Workflow is busy")

    coalescer: Coalescer[str] = Coalescer(send)
    first = asyncio.create_task(coalescer.add("a"))
    await asyncio.sleep(0)
    second = asyncio.create_task(coalescer.add("b"))
    with pytest.raises(RuntimeError, match="busy"):
        await first
    await second
    assert calls == 2


async def test_each_item_gets_its_own_answer_from_the_batch_it_went_in() -> None:
    batches: list[list[int]] = []

    async def square(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [n * n for n in items]

    batcher: Batcher[int, int] = Batcher(square)
    answers = await asyncio.gather(*(batcher.ask(n) for n in range(5)))
    assert answers == [0, 1, 4, 9, 16]
    assert batches == [[0, 1, 2, 3, 4]], "asked together, sent together"


async def test_a_send_that_answers_too_few_fails_its_batch() -> None:
    async def short(items: list[str]) -> list[str]:
        return items[:-1]

    batcher: Batcher[str, str] = Batcher(short)
    with pytest.raises(RuntimeError, match="1 answers for 2 items"):
        await asyncio.gather(batcher.ask("a"), batcher.ask("b"))

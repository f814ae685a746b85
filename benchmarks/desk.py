"""The desk under load: 2,000 open contacts waiting in 4 queues, 50 agents signed in and ready,
one supervisor on the board.

    .venv/bin/python benchmarks/desk.py [--contacts 2000] [--agents 50] [--seconds 20]

Starts its own Temporal dev server (tuned as in `dev.py run`), ace-email's worker in this
process (queue and agent workflows) and desk.py's application under uvicorn, all on free
loopback ports. The waiting contacts are entries signalled to the queues' workflows with a
skill no agent has, so they stay waiting while every agent is ready (the queues and agents are
real; what the desk reads of them is what it reads in production).

Each of the 50 agents and the supervisor keeps an event stream open and fetches their page's
live part once a second (what a page does on each change), for `--seconds`. Measured:
page latency p50/p95/p99; the time from a change (an agent's presence, set as another desk
would) to the board showing it; and the desk's queries per second against Temporal.
Baselines, same run: the sign-in page (no Temporal at all) under the same load, and what the
same pages would have cost Temporal if each asked for itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.queues import Presence, QueueInput, Waiting, WaitingBatch
from ace_email.desk.app import Desk, build_app
from ace_email.desk.auth import hash_password
from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.agents_queues import set_presence
from benchmarks.dev_server import start_dev_server
from tests.support import free_port
from worker import build_worker

TASK_QUEUE = "ace-email-desk-bench"
QUEUES = [f"desk-bench-{n}" for n in range(4)]
PASSWORD = "bench-password"
NOBODY = "a-skill-nobody-has"


def settings_for(address: str, agents: int) -> Settings:
    hashed = hash_password(PASSWORD)
    return Settings.model_validate(
        {
            "temporal": {"address": address, "task_queue": TASK_QUEUE},
            "queues": [{"name": q, "answer_within_minutes": 30} for q in QUEUES],
            "agents": [
                {"id": f"agent-{n:03}", "name": f"Agent {n}", "password_hash": hashed}
                for n in range(agents)
            ],
            "supervisors": [{"id": "sam", "name": "Sam", "password_hash": hashed}],
            "desk": {"refresh_seconds": 1.0},
        }
    )


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def describe(label: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"{label}: p50 {statistics.median(ms):,.0f} ms, p95 {percentile(ms, 0.95):,.0f} ms, "
        f"p99 {percentile(ms, 0.99):,.0f} ms ({len(ms)} requests)"
    )


async def fill_queues(settings: Settings, client: Any, contacts: int) -> None:
    now = datetime.now(UTC)
    for index, queue in enumerate(QUEUES):
        handle = await client.start_workflow(
            "QueueWorkflow",
            QueueInput(policy=settings.queue_settings(queue).policy()),
            id=ids.queue_workflow_id(queue),
            task_queue=TASK_QUEUE,
        )
        share = range(index, contacts, len(QUEUES))
        numbers = list(share)
        for start in range(0, len(numbers), 50):
            batch = WaitingBatch(
                entries=[
                    Waiting(
                        contact_id=f"contact-bench-{n:020x}",
                        round=1,
                        priority=n % 3,
                        waiting_since=now,
                        entered_at=now,
                        skills=[NOBODY],
                    )
                    for n in numbers[start : start + 50]
                ]
            )
            await handle.signal("enqueue_many", batch)


async def signed_in(base: str, user: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=base, timeout=30)
    answer = await http.post("/login", data={"username": user, "password": PASSWORD})
    assert answer.status_code == 303, (user, answer.status_code)
    return http


async def reader(http: httpx.AsyncClient, path: str, until: float, latencies: list[float]) -> None:
    """One open page: its event stream, and its live part fetched once a second."""

    async def stream() -> None:
        async with http.stream("GET", "/events") as events:
            async for _ in events.aiter_lines():
                if time.monotonic() > until:
                    return

    streaming = asyncio.create_task(stream())
    while time.monotonic() < until:
        began = time.monotonic()
        answer = await http.get(path)
        assert answer.status_code == 200, (path, answer.status_code)
        latencies.append(time.monotonic() - began)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    streaming.cancel()
    await asyncio.gather(streaming, return_exceptions=True)


async def change_to_board(
    client: Any, settings: Settings, board: httpx.AsyncClient, rounds: int
) -> list[float]:
    """An agent's presence changes; how long until the board shows it."""
    seen: list[float] = []
    agent = settings.agents[0].id
    for n in range(rounds):
        presence = Presence.NOT_READY if n % 2 == 0 else Presence.READY
        marker = f'data-agent="{agent}" data-presence="{presence.value}"'
        began = time.monotonic()
        await set_presence(client, settings, agent, presence)
        while marker not in (await board.get("/board?fragment=1")).text:
            await asyncio.sleep(0.02)
        seen.append(time.monotonic() - began)
        await asyncio.sleep(0.5)
    return seen


async def main(args: argparse.Namespace) -> None:
    env = await start_dev_server()
    client = env.client
    settings = settings_for(client.service_client.config.target_host, args.agents)
    report: list[str] = []
    pool = ImapPool(settings)
    with ThreadPoolExecutor(max_workers=32) as executor:
        async with build_worker(client, settings, pool, executor):
            began = time.monotonic()
            await fill_queues(settings, client, args.contacts)
            await asyncio.gather(
                *(set_presence(client, settings, a.id, Presence.READY) for a in settings.agents)
            )
            report.append(
                f"set-up: {args.contacts:,} contacts waiting in {len(QUEUES)} queues, "
                f"{args.agents} agents ready, in {time.monotonic() - began:.1f} s"
            )
            desk = Desk(settings, client)
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(
                    build_app(desk),
                    host="127.0.0.1",
                    port=port,
                    log_config=None,
                    access_log=False,
                )
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{port}"
            try:
                await measure(args, settings, client, desk, base, report)
            finally:
                server.should_exit = True
                await serving
    pool.close_all()
    await env.shutdown()
    print(
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}; "
        "Temporal dev server in memory, tuned as in dev.py run; worker and desk in one process"
    )
    print("\n".join(report))


async def measure(
    args: argparse.Namespace,
    settings: Settings,
    client: Any,
    desk: Desk,
    base: str,
    report: list[str],
) -> None:
    agents = [await signed_in(base, a.id) for a in settings.agents]
    board = await signed_in(base, "sam")
    anonymous = httpx.AsyncClient(base_url=base, timeout=30)
    desk_latency: list[float] = []
    board_latency: list[float] = []
    login_latency: list[float] = []
    queries_before, refreshes_before = desk.snapshot.queries, desk.snapshot.refreshes
    began = time.monotonic()
    until = began + args.seconds
    await asyncio.gather(
        *(reader(http, "/desk?fragment=1", until, desk_latency) for http in agents),
        reader(board, "/board?fragment=1", until, board_latency),
        *(reader_plain(anonymous, until, login_latency) for _ in range(5)),
    )
    elapsed = time.monotonic() - began
    queries = desk.snapshot.queries - queries_before
    refreshes = desk.snapshot.refreshes - refreshes_before
    pages = len(desk_latency) + len(board_latency)
    per_board = 2 * len(QUEUES) + len(settings.agents)
    report += [
        f"load: {len(agents)} agents and 1 supervisor, each with an event stream open and its "
        f"page fetched every second, for {elapsed:.0f} s ({pages / elapsed:.0f} pages/s)",
        describe("agent's desk", desk_latency),
        describe("supervisor's board", board_latency),
        describe("baseline, the sign-in page (no Temporal)", login_latency),
        f"the desk's queries to Temporal: {queries / elapsed:.0f}/s "
        f"({refreshes} shared refreshes, {queries / max(1, refreshes):.0f} queries each)",
        "baseline, each page asking Temporal for itself: "
        f"{(len(desk_latency) + len(board_latency) * per_board) / elapsed:.0f} queries/s "
        f"(a board asks {per_board}, an agent's desk 1 plus one per contact it holds)",
    ]
    seen = await change_to_board(client, settings, board, args.changes)
    report.append(describe("a change (an agent's presence) until the board shows it", seen))
    for http in [*agents, board, anonymous]:
        await http.aclose()


async def reader_plain(http: httpx.AsyncClient, until: float, latencies: list[float]) -> None:
    while time.monotonic() < until:
        began = time.monotonic()
        answer = await http.get("/login")
        assert answer.status_code == 200
        latencies.append(time.monotonic() - began)
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--changes", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
    return 0


if __name__ == "__main__":
    run_then_exit(run)

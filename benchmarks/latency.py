"""End-to-end latency: email sent → automatic reply in the sender's inbox, with IMAP IDLE
push and with polling alone.

    .venv/bin/python benchmarks/latency.py [--emails 20] [--poll-interval 2.0] [--company]
                                           [--no-idle]

Starts its own Temporal dev server (same settings as `dev.py run`), the embedded mail server
(or with `--company` Dovecot and Postfix) and the worker, on free loopback ports. The
baseline, measured in the same run, is the mail path alone: an email sent by SMTP straight
to the customer's mailbox and seen there by the same IMAP watcher, so the difference is what
ace-email adds (poll wait or push, claim, analysis, reply). Then ace-email with IDLE on, and
with IDLE off (polling every --poll-interval seconds); `--no-idle` measures the latter only.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiosmtplib
from imap_tools import MailBoxUnencrypted

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.testing import WorkflowEnvironment

from ace_email.contracts import ids
from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.registry import sync
from benchmarks.dev_server import start_dev_server
from benchmarks.intake import SUPPORT, mail_servers
from benchmarks.machine import TUNED_SERVER, bench_account, machine_line, servers_named
from tests.support import CUSTOMER, PASSWORD, MailStack, make_message
from worker import ACTIVITY_THREADS, build_worker


def watch_inbox(imap_port: int, tokens: set[str], arrivals: dict[str, float], stop: float) -> None:
    """Record when each message (by its subject's token) first shows up in the customer inbox."""
    with MailBoxUnencrypted("127.0.0.1", imap_port).login(
        CUSTOMER, PASSWORD, initial_folder="INBOX"
    ) as box:
        while not tokens <= arrivals.keys() and time.monotonic() < stop:
            box.folder.set("INBOX")  # re-select: a selected view may lag behind new mail
            for message in box.fetch(mark_seen=False, headers_only=True, bulk=True):
                token = (
                    message.subject.rsplit("token-", 1)[-1].split()[0]
                    if "token-" in message.subject
                    else ""
                )
                if token in tokens and token not in arrivals:
                    arrivals[token] = time.monotonic()
            time.sleep(0.01)


async def measure(stack: MailStack, emails: int, to: str, label: str) -> list[float]:
    arrivals: dict[str, float] = {}
    sent: dict[str, float] = {}
    tokens = [uuid.uuid4().hex[:12] for _ in range(emails)]
    watcher = asyncio.create_task(
        asyncio.to_thread(
            watch_inbox, stack.imap_port, set(tokens), arrivals, time.monotonic() + 120
        )
    )
    for token in tokens:
        raw = make_message(f"{label} token-{token}", "How long does this take?", to=to)
        sent[token] = time.monotonic()
        await aiosmtplib.send(
            raw, sender=CUSTOMER, recipients=[to], hostname="127.0.0.1", port=stack.smtp_port
        )
        await asyncio.sleep(0.5)
    await watcher
    return [arrivals[t] - sent[t] for t in sent if t in arrivals]


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def describe(label: str, samples: list[float], expected: int) -> str:
    if not samples:
        return f"{label}: no samples"
    ordered = sorted(samples)
    p95, p99 = percentile(ordered, 0.95), percentile(ordered, 0.99)
    return (
        f"{label}: n={len(samples)}/{expected}  p50={statistics.median(samples) * 1000:.0f} ms  "
        f"p95={p95 * 1000:.0f} ms  p99={p99 * 1000:.0f} ms  max={ordered[-1] * 1000:.0f} ms"
    )


async def through_ace_email(
    env: WorkflowEnvironment, stack: MailStack, emails: int, poll_interval: float, idle: bool
) -> tuple[list[float], int, int]:
    """Latencies through a worker for one account (IDLE on or off), replies, Sent copies."""
    name = f"bench{'idle' if idle else 'poll'}"
    address = env.client.service_client.config.target_host
    settings = bench_account(stack, address, name, poll_interval, imap_extra={"idle": idle})
    pool = ImapPool(settings)
    replies_before = await stack.count(CUSTOMER)
    sent_before = await stack.count(SUPPORT, "Sent")
    try:
        with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
            async with build_worker(env.client, settings, pool, executor):
                await sync(env.client, settings)
                await asyncio.sleep(2)
                measured = await measure(stack, emails, SUPPORT, name)
                await asyncio.sleep(0.5)
                replies = await stack.count(CUSTOMER) - replies_before
                recorded = await stack.count(SUPPORT, "Sent") - sent_before
                await env.client.get_workflow_handle(ids.mailbox_workflow_id(name)).signal("stop")
    finally:
        pool.close_all()
    return measured, replies, recorded


async def main(emails: int, poll_interval: float, company: bool, idle_too: bool) -> None:
    env = await start_dev_server()
    directory = Path(tempfile.mkdtemp(prefix="ace-latency-bench-"))
    results: list[str] = []
    try:
        async with mail_servers(company, directory) as stack:
            baseline = await measure(stack, emails, CUSTOMER, "baseline")
            results.append(
                describe("baseline  (SMTP -> customer inbox, seen by IMAP)", baseline, emails)
            )
            for idle in (True, False) if idle_too else (False,):
                measured, replies, recorded = await through_ace_email(
                    env, stack, emails, poll_interval, idle
                )
                how = "IMAP IDLE push" if idle else f"polling every {poll_interval:g} s"
                results.append(
                    describe(
                        f"ace-email, {how} (SMTP -> support -> automatic reply in customer inbox)",
                        measured,
                        emails,
                    )
                )
                results.append(f"  replies in the customer inbox: {replies}, in Sent: {recorded}")
    finally:
        await env.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    print(machine_line(servers_named(company), TUNED_SERVER))
    print(f"one email every 0.5 s; poll interval {poll_interval:g} s")
    print("\n".join(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--emails", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--company", action="store_true", help="on Dovecot + Postfix")
    parser.add_argument("--no-idle", action="store_true", help="polling alone")
    args = parser.parse_args()
    run_then_exit(
        lambda: asyncio.run(main(args.emails, args.poll_interval, args.company, not args.no_idle))
    )

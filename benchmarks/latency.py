"""End-to-end latency on the embedded stack: email sent → automatic reply in the sender's inbox.

    .venv/bin/python benchmarks/latency.py [--emails 20] [--poll-interval 1.0]

Starts its own Temporal dev server (same settings as `dev.py run`), local mail server and
worker on free loopback ports. The baseline, measured in the same run, is the mail path alone:
an email sent by SMTP straight to the customer's mailbox and seen there by the same IMAP
watcher, so the difference is what ace-email adds (poll wait, claim, analysis, reply).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
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

from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.registry import sync
from benchmarks.dev_server import start_dev_server
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from tests.support import CUSTOMER, PASSWORD, MailStack, account_settings, free_port, make_message
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


def describe(label: str, samples: list[float], expected: int) -> str:
    if not samples:
        return f"{label}: no samples"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label}: n={len(samples)}/{expected}  p50={statistics.median(samples) * 1000:.0f} ms  "
        f"p95={p95 * 1000:.0f} ms  max={ordered[-1] * 1000:.0f} ms"
    )


async def main(emails: int, poll_interval: float) -> None:
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as tmp:
        imap_port, smtp_port = free_port(), free_port()
        support = "support@example.com"
        users = [MailUser(a, PASSWORD) for a in (support, CUSTOMER)]
        server = LocalMailServer(
            Path(tmp) / "mail", users, imap_port=imap_port, smtp_port=smtp_port
        )
        mail_thread = MailServerThread(server)
        await asyncio.to_thread(mail_thread.start)
        stack = MailStack(server=server, imap_port=imap_port, smtp_port=smtp_port, support=support)
        settings = account_settings(
            name="bench",
            stack=stack,
            temporal_address=env.client.service_client.config.target_host,
            namespace="default",
            task_queue="ace-email-bench",
            poll_interval=poll_interval,
            account_extra={"auto_reply_period_hours": 0},  # every email answered: one sender
        )
        pool = ImapPool(settings)
        replies = recorded = 0
        try:
            baseline = await measure(stack, emails, CUSTOMER, "baseline")
            with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
                async with build_worker(env.client, settings, pool, executor):
                    await sync(env.client, settings)
                    await asyncio.sleep(1)
                    measured = await measure(stack, emails, support, "ace-email")
                    replies = await stack.count(CUSTOMER) - emails
                    recorded = await stack.count(support, "Sent")
        finally:
            pool.close_all()
            await asyncio.to_thread(mail_thread.stop)
            await env.shutdown()
    print(
        f"machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"poll interval: {poll_interval:g} s; one email every 0.5 s")
    print(describe("baseline  (SMTP -> customer inbox, seen by IMAP)", baseline, emails))
    print(
        describe(
            "ace-email (SMTP -> support -> automatic reply in customer inbox)", measured, emails
        )
    )
    print(f"automatic replies in the customer's inbox: {replies}, recorded in Sent: {recorded}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--emails", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    run_then_exit(lambda: asyncio.run(main(args.emails, args.poll_interval)))

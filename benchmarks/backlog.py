"""A backlog after an outage: N emails waiting in one inbox when the worker starts, drained until
every one is a queued contact with its automatic reply sent; the worker's and the Temporal
server's memory while it drains.

    .venv/bin/python benchmarks/backlog.py [--emails 10000] [--company]

Starts its own Temporal dev server (tuned as in `dev.py run`) and the embedded mail server, or
with `--company` Dovecot and Postfix, on free loopback ports; the worker runs in this process.
The baseline, in the same run, is the plain script of benchmarks/intake.py on the first 500
emails of another inbox (fetch, SMTP reply, move): the rate the mail servers allow.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import shutil
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.registry import sync
from benchmarks.dev_server import start_dev_server
from benchmarks.intake import SUPPORT, mail_servers, plain_script
from benchmarks.machine import TUNED_SERVER, bench_account, machine_line, servers_named
from tests.support import CUSTOMER, PASSWORD, MailStack, make_message
from worker import ACTIVITY_THREADS, build_worker

BASELINE_EMAILS = 500


def fill(stack: MailStack, user: str, count: int, label: str) -> None:
    """`count` emails into the user's inbox over one IMAP session (APPEND), or straight into
    the embedded server's store."""
    messages = (make_message(f"{label} question {n}", sender=CUSTOMER) for n in range(count))
    if stack.company is None:
        for raw in messages:
            stack.deliver(user, raw)
        return
    with imaplib.IMAP4("127.0.0.1", stack.imap_port) as imap:
        imap.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        imap.login(user, PASSWORD)
        for raw in messages:
            status, data = imap.append("INBOX", "", None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND refused: {data!r}")


def resident_mb(pid: int) -> tuple[float, float]:
    """(now, peak) resident memory of a process, in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def temporal_server_pid() -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"temporal") and b"start-dev" in command:
            return int(entry.name)
    raise RuntimeError("the Temporal dev server is not running")


async def main(emails: int, company: bool) -> None:
    env = await start_dev_server()
    directory = Path(tempfile.mkdtemp(prefix="ace-backlog-bench-"))
    server_pid = temporal_server_pid()
    try:
        async with mail_servers(company, directory) as stack:
            await asyncio.to_thread(fill, stack, SUPPORT, BASELINE_EMAILS, "baseline")
            raw_seconds = await asyncio.to_thread(plain_script, stack, BASELINE_EMAILS)
            began_fill = time.monotonic()
            await asyncio.to_thread(fill, stack, SUPPORT, emails, "backlog")
            fill_seconds = time.monotonic() - began_fill
            address = env.client.service_client.config.target_host
            settings = bench_account(stack, address, "backlog", poll_interval=2)
            pool = ImapPool(settings)
            worker_peak = server_peak = 0.0
            with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
                async with build_worker(env.client, settings, pool, executor):
                    began = time.monotonic()
                    await sync(env.client, settings)
                    progress = began
                    while (sent := await stack.count(SUPPORT, "Sent")) < emails:
                        worker_peak = max(worker_peak, resident_mb(os.getpid())[0])
                        server_peak = max(server_peak, resident_mb(server_pid)[0])
                        if time.monotonic() - progress > 30:
                            progress = time.monotonic()
                            print(f"  {progress - began:5.0f} s: {sent} answered", flush=True)
                        await asyncio.sleep(1)
                    drain_seconds = time.monotonic() - began
                    worker_now, _ = resident_mb(os.getpid())
                    server_now, _ = resident_mb(server_pid)
            pool.close_all()
    finally:
        await env.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    print(machine_line(servers_named(company), TUNED_SERVER, "worker in this process"))
    print(
        f"baseline, a plain script (fetch, SMTP reply, move) on {BASELINE_EMAILS} emails: "
        f"{BASELINE_EMAILS / raw_seconds:,.1f} emails/s"
    )
    print(f"{emails} emails put into the inbox in {fill_seconds:.0f} s")
    print(
        f"ace-email: {emails} waiting -> all queued with replies sent in {drain_seconds:.0f} s "
        f"({emails / drain_seconds:,.1f} emails/s)"
    )
    print(
        f"memory while draining (resident, sampled each second): worker peak "
        f"{worker_peak:,.0f} MB (at the end {worker_now:,.0f} MB), Temporal dev server peak "
        f"{server_peak:,.0f} MB (at the end {server_now:,.0f} MB)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--company", action="store_true", help="on Dovecot + Postfix")
    args = parser.parse_args()
    run_then_exit(lambda: asyncio.run(main(args.emails, args.company)))

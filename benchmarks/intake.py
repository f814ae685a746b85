"""Intake throughput against the protocol's own limit: N emails waiting in one inbox until all are
queued contacts with their automatic replies sent, beside a plain script doing the same IMAP and
SMTP work on the same servers in the same run.

    .venv/bin/python benchmarks/intake.py [--emails 300] [--company]

Starts its own Temporal dev server (tuned as in `dev.py run`) and the embedded mail server, or
with `--company` Dovecot and Postfix (root, Debian; see devtools/companymail), on free loopback
ports; the worker runs in this process.

1. Baseline: N emails are put into the inbox; a plain script logs in once and, for each email,
   fetches it, sends an automatic reply by SMTP and moves it to another folder. Emails/s.
2. ace-email: N more emails are put into the inbox, then the worker starts and the poll loop is
   started; the clock stops when every automatic reply is filed in Sent (each contact has then
   been claimed, analysed, queued and answered). Emails/s, and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path

from imap_tools import MailBoxUnencrypted

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ace_email.exiting import run_then_exit
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.registry import sync
from benchmarks.dev_server import start_dev_server
from benchmarks.machine import TUNED_SERVER, bench_account, machine_line, servers_named
from devtools.companymail import stack as companymail
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from tests.support import CUSTOMER, PASSWORD, MailStack, free_port, make_message
from worker import ACTIVITY_THREADS, build_worker

SUPPORT = "support@example.com"


@asynccontextmanager
async def mail_servers(company: bool, directory: Path) -> AsyncIterator[MailStack]:
    if company:
        ports = companymail.Ports(imap=free_port(), smtp=free_port(), lmtp=free_port())
        company_users = [companymail.User(a, PASSWORD) for a in (SUPPORT, CUSTOMER)]
        with companymail.CompanyMail(directory, ports, company_users) as stack:
            stack.new_mailboxes(uuid.uuid4().hex)
            yield MailStack(None, ports.imap, ports.smtp, SUPPORT, company=stack)
        return
    imap_port, smtp_port = free_port(), free_port()
    users = [MailUser(a, PASSWORD) for a in (SUPPORT, CUSTOMER)]
    server = LocalMailServer(directory / "mail", users, imap_port=imap_port, smtp_port=smtp_port)
    async with MailServerThread(server):
        yield MailStack(server, imap_port, smtp_port, SUPPORT)


def plain_script(stack: MailStack, count: int) -> float:
    """Fetch, reply, move, one email at a time, over one IMAP and one SMTP connection."""
    began = time.monotonic()
    done = 0
    with (
        MailBoxUnencrypted("127.0.0.1", stack.imap_port).login(SUPPORT, PASSWORD) as box,
        smtplib.SMTP("127.0.0.1", stack.smtp_port) as smtp,
    ):
        if not box.folder.exists("Done"):
            box.folder.create("Done")
        for message in box.fetch(mark_seen=False, bulk=False):
            reply = EmailMessage()
            reply["From"] = SUPPORT
            reply["To"] = message.from_
            reply["Subject"] = f"Re: {message.subject}"
            reply["In-Reply-To"] = message.headers["message-id"][0]
            reply.set_content("Thank you; we have your email.")
            smtp.send_message(reply)
            box.move(message.uid or "", "Done")
            done += 1
    elapsed = time.monotonic() - began
    assert done == count, f"the plain script handled {done} of {count}"
    return elapsed


def fill(stack: MailStack, count: int, label: str) -> None:
    for n in range(count):
        stack.deliver(SUPPORT, make_message(f"{label} question {n}", sender=CUSTOMER))


async def main(emails: int, company: bool) -> None:
    env = await start_dev_server()
    directory = Path(tempfile.mkdtemp(prefix="ace-intake-bench-"))
    try:
        async with mail_servers(company, directory) as stack:
            fill(stack, emails, "baseline")
            raw_seconds = await asyncio.to_thread(plain_script, stack, emails)
            address = env.client.service_client.config.target_host
            settings = bench_account(stack, address, "bench", poll_interval=0.5)
            fill(stack, emails, "ace-email")
            pool = ImapPool(settings)
            with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
                async with build_worker(env.client, settings, pool, executor):
                    began = time.monotonic()
                    await sync(env.client, settings)
                    while await stack.count(SUPPORT, "Sent") < emails:
                        await asyncio.sleep(0.25)
                    pipeline_seconds = time.monotonic() - began
            pool.close_all()
    finally:
        await env.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    raw_rate, rate = emails / raw_seconds, emails / pipeline_seconds
    print(machine_line(servers_named(company), TUNED_SERVER, "worker in this process"))
    print(f"baseline, a plain script (fetch, SMTP reply, move): {raw_rate:,.1f} emails/s")
    print(
        f"ace-email, {emails} emails waiting -> all queued with replies sent: {rate:,.1f} "
        f"emails/s ({pipeline_seconds:.1f} s)"
    )
    print(f"ratio: {rate / raw_rate:.3f} of the plain script's rate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--emails", type=int, default=300)
    parser.add_argument("--company", action="store_true", help="on Dovecot + Postfix")
    args = parser.parse_args()
    run_then_exit(lambda: asyncio.run(main(args.emails, args.company)))

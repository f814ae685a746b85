"""Push by IMAP IDLE on real servers: a new email becomes a contact long before the poll
interval comes round; a server session dropped, or a worker lost with its watch, and the
watch is back, on another worker if need be."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.mailbox import MailboxStatus
from ace_email.mail.idle import InboxWatch
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.registry import sync
from tests.e2e.test_several_workers import WorkerProcess
from tests.support import (
    MailStack,
    account_settings,
    eventually,
    make_message,
    wait_status,
    write_config,
)
from worker import ACTIVITY_THREADS, build_worker
from workflows.mailbox import MailboxWorkflow

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NEVER = 3600.0  # a poll interval no test waits for: only push explains a contact


def pushed_settings(mail: MailStack, temporal_address: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return account_settings(
        name=f"push-{tag}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-push-{tag}",
        poll_interval=NEVER,
    )


async def watching(client: Client, account: str) -> MailboxStatus:
    """The poll loop has polled once and watches its inbox."""
    handle = client.get_workflow_handle(ids.mailbox_workflow_id(account))

    async def check() -> MailboxStatus:
        status = await handle.query(MailboxWorkflow.status)
        assert status.polls >= 1 and status.push == "IMAP IDLE", status
        return status

    return await eventually(check, timeout=30)


async def test_a_new_email_is_taken_in_at_once_not_at_the_next_poll(
    mail: MailStack, temporal_address: str, client: Client
) -> None:
    settings = pushed_settings(mail, temporal_address)
    account = settings.accounts[0].name
    pool = ImapPool(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, settings, pool, executor):
            await sync(client, settings)
            await watching(client, account)
            await asyncio.sleep(1)  # the watch's session is in IDLE
            for n in range(2):
                raw = make_message(f"Pushed {n}", "Is anybody there?")
                began = time.monotonic()
                await mail.send(raw)
                contact = ids.contact_workflow_id(account, mime.message_key(raw))
                await wait_status(client, contact, ContactStatus.QUEUED, timeout=20)
                assert time.monotonic() - began < 20 < NEVER
            await client.get_workflow_handle(ids.mailbox_workflow_id(account)).signal(
                MailboxWorkflow.stop
            )
        pool.close_all()


async def test_the_watch_tells_of_new_mail_only(mail: MailStack, temporal_address: str) -> None:
    """EXISTS is news; the EXPUNGE of a message moved out of the inbox (a claim) is not."""
    settings = pushed_settings(mail, temporal_address)
    watch = InboxWatch(settings.accounts[0], "INBOX")
    assert await asyncio.to_thread(watch.open)
    try:
        assert not await asyncio.to_thread(watch.wait, 0.2)
        await mail.send(make_message("New", "New mail."))

        async def told() -> bool:
            return await asyncio.to_thread(watch.wait, 1.0)

        assert await eventually(told, timeout=15, interval=0)
        pool = ImapPool(settings)
        try:
            with pool.session(settings.accounts[0].name) as session:
                session.select("INBOX", refresh=True)
                uid = session.search("ALL")[0]
                session.move(uid, "Processing")
        finally:
            pool.close_all()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert not await asyncio.to_thread(watch.wait, 0.5), "a claim is no news"
        watch.interrupt()
    finally:
        await asyncio.to_thread(watch.close)


@pytest.mark.embedded_only
@pytest.mark.timeout(180)
async def test_a_watch_lost_with_its_worker_is_taken_over_by_another(
    mail: MailStack, temporal_address: str, client: Client, tmp_path: Path
) -> None:
    settings = pushed_settings(mail, temporal_address)
    account = settings.accounts[0].name
    config = write_config(tmp_path / "ace-email.toml", settings)
    first = WorkerProcess("first", config, tmp_path / "first.log")
    second: WorkerProcess | None = None
    try:
        await sync(client, settings)
        await watching(client, account)
        await asyncio.sleep(2)  # the first worker holds the watch
        second = WorkerProcess("second", config, tmp_path / "second.log")
        await asyncio.sleep(3)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        # The lost watch stops heartbeating; after its heartbeat timeout it is tried again,
        # on the worker that is left.
        await asyncio.sleep(15)
        raw = make_message("After the loss", "Still there?")
        await mail.send(raw)
        contact = ids.contact_workflow_id(account, mime.message_key(raw))
        await wait_status(client, contact, ContactStatus.QUEUED, timeout=30)
        await client.get_workflow_handle(ids.mailbox_workflow_id(account)).signal(
            MailboxWorkflow.stop
        )
        assert second.stop() == 0
    finally:
        for process in (first, second):
            if process is not None and process.process.poll() is None:
                process.process.kill()

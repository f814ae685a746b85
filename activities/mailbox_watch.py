"""The push of a mailbox: a long-running, heartbeating activity that holds the account's IMAP
IDLE session and signals its poll loop (`poll_now`) when new mail arrives.

One per account, whatever the number of workers: the account's poll loop runs it. A worker
lost with it stops heartbeating and Temporal gives the watch to another worker; a dropped
connection fails the try and it is retried. The poll loop's timer stays the safety net, and
the poll's cursor alone decides what is taken: a signal too many costs one empty poll.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.mailbox import WatchRequest, WatchResult
from ace_email.mail.idle import InboxWatch
from activities.mail_faults import mail_faults

# How long one wait on the socket lasts: the activity heartbeats, and sees a cancellation,
# between two of them.
WAIT_SECONDS = 2.0
# Mail arriving in a burst asks for a poll at most this often; the poll reads all that came.
SIGNAL_GAP_SECONDS = 0.2


class WatchActivities:
    """IDLE sessions, each on a thread of this class's own pool: a watch holds its thread for
    as long as it runs, and must never take one from other activities."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._threads = ThreadPoolExecutor(max_workers=256, thread_name_prefix="imap-idle")

    @activity.defn
    @mail_faults(benign=True)  # a dropped IDLE session is retried; the poll loop carries on
    async def watch_mailbox(self, request: WatchRequest) -> WatchResult:
        """Watch the inbox until `watch_seconds` have passed, the poll loop cancels, or this
        worker shuts down (the watch then fails, to be retried on another worker)."""
        account = self._settings.account(request.account)
        watch = InboxWatch(account, request.folder)
        loop = asyncio.get_running_loop()
        shutdown: asyncio.Future[None] = asyncio.ensure_future(activity.wait_for_worker_shutdown())
        waiting: Future[bool] | None = None
        try:
            if not await loop.run_in_executor(self._threads, watch.open):
                return WatchResult(offered=False)
            mailbox = self._client.get_workflow_handle(ids.mailbox_workflow_id(account.name))
            end = loop.time() + request.watch_seconds
            news, pending, last_signal = 0, False, float("-inf")
            while loop.time() < end:
                activity.heartbeat()
                gap = SIGNAL_GAP_SECONDS - (loop.time() - last_signal)
                timeout = max(gap, 0.01) if pending else WAIT_SECONDS
                waiting = self._threads.submit(watch.wait, timeout)
                told = asyncio.wrap_future(waiting)
                either: set[asyncio.Future[Any]] = {told, shutdown}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if shutdown.done():
                    raise ApplicationError(
                        f"{account.name}: this worker is shutting down; another one takes "
                        "over the IDLE watch",
                        type="WorkerShuttingDown",
                    )
                pending = told.result() or pending
                waiting = None
                if pending and loop.time() - last_signal >= SIGNAL_GAP_SECONDS:
                    await mailbox.signal("poll_now")
                    news, pending, last_signal = news + 1, False, loop.time()
            return WatchResult(offered=True, news=news)
        finally:  # a wait still on the socket is woken, and ends before the session closes
            shutdown.cancel()
            if waiting is not None:
                watch.interrupt()
            await loop.run_in_executor(self._threads, _close_after, waiting, watch)


def _close_after(waiting: Future[bool] | None, watch: InboxWatch) -> None:
    if waiting is not None:
        with suppress(BaseException):
            waiting.result()
    watch.close()

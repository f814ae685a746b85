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
        worker shuts down (the poll loop then starts the next watch, on another worker).

        Every blocking call (log in, wait on the socket) runs on this class's threads and is
        raced against the worker's shutdown, so a shutdown never waits for a server."""
        account = self._settings.account(request.account)
        watch = InboxWatch(account, request.folder)
        loop = asyncio.get_running_loop()
        shutdown: asyncio.Future[None] = asyncio.ensure_future(activity.wait_for_worker_shutdown())
        opening = self._threads.submit(watch.open)
        busy: Future[bool] | None = opening
        try:
            offered = await _unless(opening, shutdown)
            busy = None
            if offered is None:
                return WatchResult(offered=True)
            if not offered:
                return WatchResult(offered=False)
            mailbox = self._client.get_workflow_handle(ids.mailbox_workflow_id(account.name))
            end = loop.time() + request.watch_seconds
            news, pending, last_signal = 0, False, float("-inf")
            while loop.time() < end:
                activity.heartbeat()
                gap = SIGNAL_GAP_SECONDS - (loop.time() - last_signal)
                waiting = self._threads.submit(
                    watch.wait, max(gap, 0.01) if pending else WAIT_SECONDS
                )
                busy = waiting
                told = await _unless(waiting, shutdown)
                busy = None
                if told is None:  # the poll loop starts the next watch, on another worker
                    break
                pending = told or pending
                if pending and loop.time() - last_signal >= SIGNAL_GAP_SECONDS:
                    await mailbox.signal("poll_now")
                    news, pending, last_signal = news + 1, False, loop.time()
            return WatchResult(offered=True, news=news)
        finally:
            shutdown.cancel()
            if busy is not None:  # cancelled, or shutting down, while a call is in progress
                watch.interrupt()
            self._threads.submit(_close_after, busy, watch)  # once that call has ended


async def _unless(call: Future[bool], shutdown: asyncio.Future[None]) -> bool | None:
    """The call's answer, or None if the worker began to shut down first."""
    answer = asyncio.wrap_future(call)
    either: set[asyncio.Future[Any]] = {answer, shutdown}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if answer.done():
        return answer.result()
    answer.cancel()  # the call ends on its own; its outcome is no longer wanted
    return None


def _close_after(busy: Future[bool] | None, watch: InboxWatch) -> None:
    if busy is not None:
        with suppress(BaseException):
            busy.result()
    watch.close()

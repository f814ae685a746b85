"""IMAP sessions, pooled per account within a worker process.

A login costs far more than a command (about 90 ms of server CPU on a small server), so a
worker keeps a few logged-in sessions per account and lends them to one caller at a time. One
caller at a time retries a failing account; the others fail at once, so a dead server cannot
take every thread."""

from __future__ import annotations

import asyncio
import imaplib
import logging
import queue
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

from ace_email.config.accounts import AccountSettings
from ace_email.config.base import ConfigError
from ace_email.config.mail_servers import ImapSettings
from ace_email.config.settings import Settings
from ace_email.mail.errors import ImapError
from ace_email.mail.imap import ImapSession, connect

log = logging.getLogger(__name__)

SESSION_WAIT_SECONDS = 600.0
SLOT_CHECK_SECONDS = 0.2


class ImapPool:
    """Logged-in sessions per account, reused across activities in this worker.

    An account whose server refuses or never answers holds at most one thread: while its
    last attempt failed, one activity at a time tries again and the others fail at once with
    that error instead of queueing behind it (Temporal retries them with back-off).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: dict[str, queue.LifoQueue[ImapSession]] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._connecting: dict[str, threading.Lock] = {}
        self._failing: dict[str, ImapError] = {}

    def _account(self, name: str) -> AccountSettings:
        return self._settings.account(name)

    def _queues(
        self, account: AccountSettings
    ) -> tuple[queue.LifoQueue[ImapSession], threading.BoundedSemaphore]:
        with self._lock:
            if account.name not in self._idle:
                self._idle[account.name] = queue.LifoQueue()
                self._slots[account.name] = threading.BoundedSemaphore(
                    account.imap.sessions_per_worker
                )
            return self._idle[account.name], self._slots[account.name]

    def failure(self, account_name: str) -> ImapError | None:
        """The error of the account's last connection attempt, while it keeps failing."""
        return self._failing.get(account_name)

    def _fail_fast(self, account_name: str) -> None:
        if (failure := self._failing.get(account_name)) is not None:
            raise type(failure)(str(failure), transient=failure.transient)

    @contextmanager
    def session(self, account_name: str) -> Iterator[ImapSession]:
        account = self._account(account_name)
        idle, slots = self._queues(account)
        seen = self._failing.get(account_name)
        waited = 0.0
        while not slots.acquire(timeout=SLOT_CHECK_SECONDS):
            self._fail_fast(account_name)
            waited += SLOT_CHECK_SECONDS
            if waited > SESSION_WAIT_SECONDS:
                raise ImapError(f"{account_name}: no IMAP session came free in this worker")
        try:
            try:
                session = idle.get_nowait()
            except queue.Empty:
                session = self._connect(account, seen)
            with _returned_to(idle, session):
                yield session
        finally:
            slots.release()

    def _connect(self, account: AccountSettings, seen: ImapError | None) -> ImapSession:
        """A new session whose account folders are known to exist.

        Connections of one account are made one at a time, so this worker never sends two
        concurrent CREATEs for the same folder (some servers fail one of them). `seen` is the
        account's failure when the caller arrived: one recorded since fails the caller too.
        """
        with self._lock:
            connecting = self._connecting.setdefault(account.name, threading.Lock())
        if self._failing.get(account.name) is None:
            connecting.acquire()
        elif not connecting.acquire(blocking=False):
            self._fail_fast(account.name)
        failure = self._failing.get(account.name)
        if failure is not None and failure is not seen:
            connecting.release()
            self._fail_fast(account.name)
        try:
            session = self._login(account)
        except ImapError as exc:
            self._failing[account.name] = exc
            raise
        finally:
            connecting.release()
        self._failing.pop(account.name, None)
        return session

    def _login(self, account: AccountSettings) -> ImapSession:
        """Connect, log in and create the folders; any fault becomes an ImapError naming the
        account and the server, never the password."""
        imap = account.imap
        where = f"{imap.host}:{imap.port}"
        try:
            session = connect(account)
            session.ensure_folders(
                [
                    imap.processing_folder,
                    imap.archive_folder,
                    imap.quarantine_folder,
                    imap.sent_folder,
                    imap.workitem_folder,
                    imap.outbox_folder,
                ]
            )
            return session
        except ImapError as exc:
            raise type(exc)(_without_secret(imap, str(exc)), transient=exc.transient) from None
        except ConfigError as exc:
            raise ImapError(f"{account.name}: imap.{exc}", transient=False) from None
        except (OSError, EOFError, imaplib.IMAP4.error) as exc:
            detail = _without_secret(imap, str(exc) or type(exc).__name__)
            raise ImapError(f"{account.name}: IMAP {where} failed during login: {detail}") from None

    @asynccontextmanager
    async def lease(self, account_name: str) -> AsyncIterator[ImapSession]:
        """A session for async activities, used through `asyncio.to_thread`.

        Waiting for a free session happens on the event loop, never on a thread: the threads
        that run the IMAP commands of sessions already lent must always be free to do so.
        Holding one session through a whole send keeps the record of it (a move or an
        append) one command after the SMTP server's answer.
        """
        account = self._account(account_name)
        idle, slots = self._queues(account)
        seen = self._failing.get(account_name)
        waited = 0.0
        while not slots.acquire(blocking=False):
            self._fail_fast(account_name)
            if waited > SESSION_WAIT_SECONDS:
                raise ImapError(f"{account_name}: no IMAP session came free in this worker")
            await asyncio.sleep(0.02)
            waited += 0.02
        try:
            try:
                session = idle.get_nowait()
            except queue.Empty:
                session = await asyncio.to_thread(self._connect, account, seen)
            with _returned_to(idle, session):
                yield session
        finally:
            slots.release()

    def close_all(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                while True:
                    try:
                        _close_quietly(idle.get_nowait())
                    except queue.Empty:
                        break


@contextmanager
def _returned_to(idle: queue.LifoQueue[ImapSession], session: ImapSession) -> Iterator[None]:
    """Give a lent session back to the pool, or drop it if its connection failed."""
    try:
        yield
    except (OSError, imaplib.IMAP4.abort, ssl.SSLError, EOFError):
        _close_quietly(session)
        raise
    except BaseException:
        session.selected = None
        idle.put(session)
        raise
    else:
        idle.put(session)


def _without_secret(imap: ImapSettings, text: str) -> str:
    with suppress(ConfigError):
        if secret := imap.secret():
            return text.replace(secret, "***")
    return text


def _close_quietly(session: ImapSession) -> None:
    """Drop a connection without LOGOUT: waiting for a server's goodbye only delays shutdown."""
    with suppress(Exception):
        session.client.shutdown()

"""IMAP sessions, pooled per account within a worker process.

A login costs far more than a command (≈90 ms of server CPU on a small server), so a worker
keeps a few logged-in sessions per account and lends them to activities one at a time.
imap-tools does the connecting and logging in; the commands that must be exact (UID MOVE,
UID SEARCH, UID FETCH, APPEND) are issued on its imaplib client directly.
"""

from __future__ import annotations

import asyncio
import imaplib
import ipaddress
import logging
import queue
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError
from imap_tools.imap_utf7 import utf7_decode, utf7_encode

from ace_email.settings import AccountSettings, ImapSettings, Security, Settings

log = logging.getLogger(__name__)

_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
SESSION_WAIT_SECONDS = 600.0
_COPYUID = re.compile(rb"COPYUID (\d+) ([\d:,]+) ([\d:,]+)")


class ImapError(Exception):
    """The server refused a command; `transient` says whether trying again may help."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class ImapLoginError(ImapError):
    pass


@dataclass
class Fetched:
    uid: int
    size: int = 0
    flags: tuple[str, ...] = ()
    raw: bytes = b""


def quote_mailbox(name: str) -> str:
    encoded = utf7_encode(name).decode("ascii")
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str | None:
    """An IMAP quoted string, or None where the value cannot be one (8-bit or CR/LF)."""
    if any(ord(c) > 126 or c in "\r\n\0" for c in value):
        return None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ImapSession:
    """One logged-in connection; not thread-safe, lent to one activity at a time."""

    account: str
    mailbox: BaseMailBox
    known_folders: set[str] = field(default_factory=set)
    selected: tuple[str, bool] | None = None
    uidvalidity: int = 0

    @property
    def client(self) -> imaplib.IMAP4:
        client: imaplib.IMAP4 = self.mailbox.client
        return client

    def _ok(self, what: str, result: tuple[str, Sequence[object]]) -> Sequence[object]:
        status, data = result
        if status != "OK":
            text = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
            raise ImapError(f"{self.account}: {what} failed: {status} {text}")
        return data

    def ensure_folders(self, folders: Sequence[str]) -> None:
        """Create the folders ace-email uses where they are missing (LIST first, then CREATE)."""
        status, data = self.client.list()
        if status == "OK":
            for line in data:
                if isinstance(line, bytes):
                    name = line.rsplit(b" ", 1)[-1].strip(b'"').decode(errors="replace")
                    self.known_folders.add(utf7_decode(name.encode()) if "&" in name else name)
        for folder in folders:
            self.ensure_folder(folder)

    def ensure_folder(self, folder: str) -> None:
        if folder in self.known_folders:
            return
        status, _ = self.client.create(quote_mailbox(folder))
        if status != "OK":
            log.debug("%s: CREATE %s answered %s (assumed to exist)", self.account, folder, status)
        self.known_folders.add(folder)

    def select(self, folder: str, *, readonly: bool = False, refresh: bool = False) -> int:
        """Select a folder unless it already is; returns its UIDVALIDITY.

        `refresh` asks an already selected folder for news (NOOP), as a poll must.
        """
        if self.selected == (folder, readonly):
            if refresh:
                self._ok("NOOP", self.client.noop())
            return self.uidvalidity
        if self.selected is not None and self.selected[0] != folder:
            self.ensure_folder(folder)
        status, data = self.client.select(quote_mailbox(folder), readonly)
        if status != "OK":
            self.ensure_folder(folder)
            status, data = self.client.select(quote_mailbox(folder), readonly)
        if status != "OK":
            raise ImapError(f"{self.account}: cannot select folder {folder!r}: {data!r}")
        _, validity = self.client.response("UIDVALIDITY")
        value = validity[-1] if validity else None
        self.uidvalidity = int(value) if isinstance(value, bytes | str) else 0
        self.selected = (folder, readonly)
        return self.uidvalidity

    def search(self, criteria: str) -> list[int]:
        data = self._ok(f"UID SEARCH {criteria}", self.client.uid("SEARCH", criteria))
        uids: list[int] = []
        for chunk in data:
            if isinstance(chunk, bytes):
                uids.extend(int(u) for u in chunk.split())
        return sorted(set(uids))

    def fetch(self, uids: list[int], items: str) -> dict[int, Fetched]:
        if not uids:
            return {}
        data = self._ok("UID FETCH", self.client.uid("FETCH", _uid_set(uids), items))
        result: dict[int, Fetched] = {}
        for chunk in data:
            head, literal = (chunk[0], chunk[1]) if isinstance(chunk, tuple) else (chunk, b"")
            if not isinstance(head, bytes):
                continue
            uid_match = _FETCH_UID.search(head)
            if uid_match is None:
                continue
            uid = int(uid_match.group(1))
            entry = result.setdefault(uid, Fetched(uid))
            if size := _FETCH_SIZE.search(head):
                entry.size = int(size.group(1))
            if flags := _FETCH_FLAGS.search(head):
                entry.flags = tuple(flags.group(1).decode(errors="replace").split())
            if isinstance(literal, bytes) and literal:
                entry.raw = literal
        return result

    def fetch_one(self, uid: int, items: str = "(UID RFC822.SIZE BODY.PEEK[])") -> Fetched | None:
        """One message of the selected folder; asks for news (NOOP) once if it is not known
        yet: a session only sees mail that arrived after its SELECT once told of it."""
        found = self.fetch([uid], items).get(uid)
        if found is None:
            self._ok("NOOP", self.client.noop())
            found = self.fetch([uid], items).get(uid)
        return found

    def move(self, uid: int, folder: str) -> tuple[int, int] | None:
        """UID MOVE one message; returns (UIDVALIDITY, UID) in the target, where the server says.

        Never falls back to a plain EXPUNGE: that would also remove messages that somebody
        else flagged \\Deleted in the same folder.
        """
        self.ensure_folder(folder)
        self.client.untagged_responses.pop("COPYUID", None)
        if "MOVE" in self.client.capabilities:
            typ, data = self.client.uid("MOVE", str(uid), quote_mailbox(folder))
        elif "UIDPLUS" in self.client.capabilities:
            typ, data = self.client.uid("COPY", str(uid), quote_mailbox(folder))
            if typ == "OK":
                self._ok(
                    "UID STORE", self.client.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
                )
                typ, data = self.client.uid("EXPUNGE", str(uid))
        else:
            raise ImapError(
                f"{self.account}: the server offers neither MOVE nor UIDPLUS; "
                "messages cannot be moved without expunging others",
                transient=False,
            )
        if typ != "OK":
            raise ImapError(f"{self.account}: UID MOVE {uid} to {folder!r} failed: {data!r}")
        return _new_uid(self.client, data, uid)

    def append(self, folder: str, raw: bytes, flags: str = r"(\Seen)") -> None:
        self.ensure_folder(folder)
        self._ok(f"APPEND to {folder}", self.client.append(quote_mailbox(folder), flags, None, raw))
        self.selected = None


def _uid_set(uids: list[int]) -> str:
    return ",".join(str(u) for u in uids)


def _new_uid(client: imaplib.IMAP4, data: Sequence[object], old_uid: int) -> tuple[int, int] | None:
    """The target's (UIDVALIDITY, UID) from a COPYUID response code (RFC 4315)."""
    candidates: list[object] = [*data, *client.untagged_responses.pop("COPYUID", [])]
    _, ok_responses = client.response("OK")
    candidates.extend(ok_responses or [])
    for item in candidates:
        if not isinstance(item, bytes):
            continue
        match = _COPYUID.search(item)
        if match and match.group(2) == str(old_uid).encode():
            return int(match.group(1)), int(match.group(3))
    return None


class ImapPool:
    """Logged-in sessions per account, reused across activities in this worker."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._idle: dict[str, queue.LifoQueue[ImapSession]] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._connecting: dict[str, threading.Lock] = {}

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

    @contextmanager
    def session(self, account_name: str) -> Iterator[ImapSession]:
        account = self._account(account_name)
        idle, slots = self._queues(account)
        if not slots.acquire(timeout=SESSION_WAIT_SECONDS):
            raise ImapError(f"{account_name}: no IMAP session came free in this worker")
        try:
            try:
                session = idle.get_nowait()
            except queue.Empty:
                session = self._connect(account)
            with _returned_to(idle, session):
                yield session
        finally:
            slots.release()

    def _connect(self, account: AccountSettings) -> ImapSession:
        """A new session whose account folders are known to exist.

        Connections of one account are made one at a time, so this worker never sends two
        concurrent CREATEs for the same folder (some servers fail one of them).
        """
        with self._lock:
            connecting = self._connecting.setdefault(account.name, threading.Lock())
        with connecting:
            session = connect(account)
            imap = account.imap
            session.ensure_folders(
                [
                    imap.processing_folder,
                    imap.archive_folder,
                    imap.quarantine_folder,
                    imap.sent_folder,
                ]
            )
            return session

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
        waited = 0.0
        while not slots.acquire(blocking=False):
            if waited > SESSION_WAIT_SECONDS:
                raise ImapError(f"{account_name}: no IMAP session came free in this worker")
            await asyncio.sleep(0.02)
            waited += 0.02
        try:
            try:
                session = idle.get_nowait()
            except queue.Empty:
                session = await asyncio.to_thread(self._connect, account)
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


def _close_quietly(session: ImapSession) -> None:
    """Drop a connection without LOGOUT: waiting for a server's goodbye only delays shutdown."""
    with suppress(Exception):
        session.client.shutdown()


def _mailbox(imap: ImapSettings) -> BaseMailBox:
    if imap.security is Security.SSL:
        return MailBox(
            imap.host,
            imap.port,
            timeout=imap.timeout_seconds,
            ssl_context=ssl.create_default_context(),
        )
    if imap.security is Security.STARTTLS:
        return MailBoxStartTls(
            imap.host,
            imap.port,
            timeout=imap.timeout_seconds,
            ssl_context=ssl.create_default_context(),
        )
    return MailBoxUnencrypted(imap.host, imap.port, timeout=imap.timeout_seconds)


def connect(account: AccountSettings) -> ImapSession:
    """Connect and log in; refreshes the capability list, which imap-tools leaves stale."""
    imap = account.imap
    if imap.security is Security.NONE and not is_loopback(imap.host) and not imap.allow_plaintext:
        raise ImapError(
            f"{account.name}: imap.security is 'none' for non-loopback host {imap.host}; "
            "set imap.allow_plaintext = true to send the password unencrypted anyway",
            transient=False,
        )
    try:
        mailbox = _mailbox(imap)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ImapError(
            f"{account.name}: cannot connect to IMAP {imap.host}:{imap.port}: {exc}"
        ) from None
    sock = getattr(mailbox.client, "sock", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        mailbox.login(imap.username or "", imap.secret() or "", initial_folder=None)
    except MailboxLoginError:
        raise ImapLoginError(
            f"{account.name}: IMAP login as {imap.username!r} "
            f"at {imap.host}:{imap.port} was refused"
        ) from None
    status, data = mailbox.client.capability()
    if status == "OK" and data and isinstance(data[-1], bytes):
        mailbox.client.capabilities = tuple(data[-1].decode().upper().split())
    return ImapSession(account.name, mailbox)

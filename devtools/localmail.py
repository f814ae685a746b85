"""An embedded mail server speaking real IMAP and SMTP on loopback.

This is the mail server used by the demo and by the end-to-end tests. It runs
entirely inside the current asyncio event loop:

* **IMAP** is served by `pymap <https://github.com/icgood/pymap>`_ with its
  on-disk *maildir* backend, so mail (and every mailbox's UIDVALIDITY) survives
  a restart of the server on the same data directory. The listener is
  plaintext (no TLS) and meant for loopback only. MOVE, UIDPLUS, SEARCH HEADER,
  APPEND, CREATE, STATUS and IDLE work as in pymap. Keywords persist only if
  they are in the mailbox's keyword table (see ``keywords`` of
  :class:`LocalMailServer`); pymap keeps any other keyword for the session only.
  A few pymap internals are adjusted on first start (see :func:`_patch_pymap`):
  ``BODY[]`` is served byte-exact, UIDs follow arrival order, and mailboxes that
  mail is moved out of do not slow down.
* **SMTP** is served by :class:`aiosmtpd.smtp.SMTP` on the same event loop. Every
  recipient that matches a configured user (case-insensitively) gets the message
  written atomically (``tmp/`` then :func:`os.rename`) into the ``new/``
  directory of that user's INBOX maildir; pymap assigns it a UID the next time
  a client selects the mailbox or issues any command while it is selected
  (``NOOP`` included). The message bytes are kept exactly as received; only a
  ``Return-Path:`` and a ``Received:`` header are prepended.

On disk, ``data_dir`` holds pymap's ``pymap-etc-passwd``/``pymap-etc-shadow``/
``pymap-etc-group`` files and one maildir per user, named after the user's
address (sub-folders use the Maildir++ ``.Name`` layout).

Run it standalone with::

    python -m devtools.localmail --data-dir DIR --imap-port 1143 \\
        --smtp-port 1025 --users-file users.txt

The passwords handled here belong to this local demo server only; they are
stored hashed with a deliberately cheap PBKDF2 work factor so that a fresh IMAP
login stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextvars
import itertools
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
from argparse import Namespace
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from mailbox import MaildirMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, cast

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.sock import SocketInfo
from pymap.backend.maildir import Config as MaildirConfig
from pymap.backend.maildir import Identity, Login, MaildirBackend
from pymap.backend.maildir.flags import MaildirFlags
from pymap.backend.maildir.io import FileWriteable
from pymap.backend.maildir.layout import MaildirLayout
from pymap.backend.maildir.mailbox import LoadedMessage, MailboxData, MailboxSet
from pymap.backend.maildir.mailbox import Maildir as PymapMaildir
from pymap.backend.maildir.mailbox import Message as MaildirBackendMessage
from pymap.backend.maildir.uidlist import Record, UidList
from pymap.concurrent import Subsystem
from pymap.exceptions import InvalidAuth, UserNotFound
from pymap.frozen import frozendict
from pymap.imap import IMAPServer, IMAPService
from pymap.mime import MessageContent
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials import FetchRequirement, ObjectId
from pymap.user import Passwords, UserMetadata
from pysasl import SASLAuth
from pysasl.creds.external import ExternalCredentials, ExternalVerificationRequired
from pysasl.creds.server import ServerCredentials
from pysasl.hashing import BuiltinHash

__all__ = [
    "DEFAULT_KEYWORDS",
    "MAX_MESSAGE_SIZE",
    "LocalMailServer",
    "MailUser",
    "UnknownMailboxError",
    "main",
]

_log = logging.getLogger(__name__)

#: Largest message accepted over SMTP, in bytes (64 MiB).
MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024

#: PBKDF2 rounds for the stored password hashes. This is a loopback demo server,
#: so a cheap hash keeps a fresh IMAP login fast (pymap's default is 500 000).
_PASSWORD_HASH_ROUNDS: Final = 1000

#: Keywords every mailbox can store (pymap's maildir backend keeps a fixed table
#: of at most 26 keywords per mailbox; other keywords only live for the session).
DEFAULT_KEYWORDS: Final[tuple[str, ...]] = (
    "$Forwarded",
    "$MDNSent",
    "$Junk",
    "$NotJunk",
    "$Phishing",
    "$Important",
)

_SERVER_NAME: Final = "localhost"
_IDENT: Final = "ace-email localmail"


@dataclass(frozen=True)
class MailUser:
    """A mailbox on the local server.

    Attributes:
        address: The email address, e.g. ``support@example.com``; it is also the
            IMAP login name and the name of the user's maildir directory.
        password: The IMAP password.
    """

    address: str
    password: str

    def __post_init__(self) -> None:
        address = self.address
        local, at, domain = address.rpartition("@")
        if (
            not at
            or not local
            or not domain
            or address.startswith(".")
            or any(ch in address for ch in "/\\:\0")
            or any(ch.isspace() or ord(ch) < 0x20 for ch in address)
        ):
            raise ValueError(f"not a usable mailbox address: {address!r}")
        if not self.password:
            raise ValueError(f"empty password for {address!r}")

    def __repr__(self) -> str:
        return f"MailUser(address={self.address!r}, password='***')"


class UnknownMailboxError(LookupError):
    """Raised by :meth:`LocalMailServer.deliver` for an address with no mailbox."""


TokenCheck = Callable[[str, str], bool]
"""Whether an XOAUTH2 access token (second argument) lets a user (first) log in."""


class _LocalConfig(MaildirConfig):
    """pymap maildir config with a fixed greeting (no FQDN lookup per connection), and
    XOAUTH2 among the login mechanisms when a token check is set."""

    xoauth2: TokenCheck | None = None

    @property
    def greeting(self) -> bytes:
        return b"Server ready " + _SERVER_NAME.encode("ascii")

    @property
    def tls_auth(self) -> SASLAuth:
        if self.xoauth2 is None:
            return super().tls_auth
        return SASLAuth.named([b"PLAIN", b"LOGIN", b"XOAUTH2"])


class _Login(Login):
    """pymap's maildir login; XOAUTH2 credentials are checked by the config's token check."""

    async def authenticate(self, credentials: ServerCredentials) -> Identity:
        if not isinstance(credentials, ExternalCredentials):
            return await super().authenticate(credentials)
        check = getattr(self.config, "xoauth2", None)
        try:
            credentials.verify(None)
        except ExternalVerificationRequired as required:
            token = required.token or ""
        if check is None or not check(credentials.authzid, token):
            raise InvalidAuth()
        return Identity(self.config, self.tokens, credentials.authzid, None, set())


def _pymap_args(data_dir: Path, host: str, port: int) -> Namespace:
    """Build the Namespace that ``pymap --no-tls --host H --port P maildir DIR`` would.

    Uses pymap's own argument definitions (those of :class:`IMAPService` and
    :class:`MaildirBackend`) so that every attribute pymap reads from
    ``config.args`` exists with its usual default.
    """
    parser = argparse.ArgumentParser(prog="pymap", add_help=False)
    IMAPService.add_arguments(parser)
    subparsers = parser.add_subparsers(dest="backend", required=True)
    backend_parser = MaildirBackend.add_subparser("maildir", subparsers)
    backend_parser.set_defaults(backend_type=MaildirBackend)
    parser.set_defaults(skip_services=[], passlib_cfg=None, debug=False)
    return parser.parse_args(
        ["--no-tls", "--host", host, "--port", str(port), "maildir", str(data_dir)]
    )


_patch_lock = threading.Lock()
_patched = False

#: The file in which pymap's maildir backend looks up a mailbox's keywords.
_KEYWORDS_FILE: Final = "dovecot-keywords"
#: pymap maps keywords to the maildir info letters ``a``..``z``.
_MAX_KEYWORDS: Final = 26
_KEYWORD = re.compile(r"[!#$&'+\-.0-9;<=>?@A-Z^_`a-z|~]{1,64}")
_LAYOUT: Final = "++"
_ARRIVAL = re.compile(r"^(\d+)\.(?:M(\d+))?")


def _patch_pymap() -> None:
    """Adjust pymap 0.36's maildir backend (process-wide, idempotent).

    1. ``FileWriteable.file_write`` writes its temporary file in the system temp
       directory and then :func:`os.rename`\\ s it over the target, which fails
       with ``EXDEV`` when the data directory is on another filesystem. The
       temporary file is created next to the target instead.
    2. ``Message.load_content`` rebuilds the message with :mod:`email` (compat32)
       before handing it to the IMAP layer, which re-folds long header lines and
       turns CRLF into LF, so ``BODY[]`` would differ from the stored bytes. The
       stored file is read verbatim instead.
    3. After ``MOVE``/``EXPUNGE`` the source mailbox keeps the message's record
       in its ``dovecot-uidlist`` until a client sends ``CHECK``; every later
       command then re-lists the maildir once per stale record (Python's
       ``mailbox.Maildir._lookup`` refreshes on a miss), so a mailbox that mail is
       routinely moved out of gets quadratically slower. The record is dropped
       as soon as the file is gone instead. A command that rescans the destination
       between MOVE's rename and its UID-list write gives the moved file a second
       UID (one message listed twice); that twin is dropped too, after APPEND as well.
    4. ``MailboxData.reset`` (run by every command) assigns UIDs to files found
       in ``new/``/``cur/`` in directory-listing order and stats every message to
       do so. UIDs are assigned in arrival order (by maildir file name) instead,
       reading only the directory listing.
    5. ``MailboxSet.add_mailbox`` (CREATE) gives the new folder the keyword table
       of the INBOX, so keywords are usable in every folder.
    6. ``MailboxData.copy`` (COPY) stores an empty message: it copies only the
       metadata it read. The message file's bytes are copied with it instead.
    7. APPEND stores the literal re-generated by :mod:`email` (CRLF turned into
       LF). The literal is stored verbatim instead.
    """
    global _patched
    with _patch_lock:
        if _patched:
            return
        original_move = MailboxData.move
        original_delete = MailboxData.delete
        original_add_mailbox = MailboxSet.add_mailbox
        original_append = MailboxData.append

        async def move(
            self: MailboxData, uid: int, destination: MailboxData, *, recent: bool = False
        ) -> int | None:
            new_uid = await original_move(self, uid, destination, recent=recent)
            if new_uid is not None:
                await _forget_uids(self, [uid])
                await _drop_twins(destination, new_uid)
            return new_uid

        async def append(
            self: MailboxData, append_msg: AppendMessage, *, recent: bool = False
        ) -> Any:
            message = await original_append(self, append_msg, recent=recent)
            await _drop_twins(self, message.uid)
            return message

        async def delete(self: MailboxData, uids: Iterable[int]) -> None:
            uids = list(uids)
            await original_delete(self, uids)
            await _forget_uids(self, uids)

        async def add_mailbox(self: MailboxSet, name: str) -> ObjectId:
            mailbox_id = await original_add_mailbox(self, name)
            inbox_keywords = os.path.join(self._path, _KEYWORDS_FILE)
            folder = self._layout.get_path(name, self.delimiter)
            folder_keywords = os.path.join(folder, _KEYWORDS_FILE)
            if os.path.exists(inbox_keywords) and not os.path.exists(folder_keywords):
                shutil.copyfile(inbox_keywords, folder_keywords)
            return mailbox_id

        original_dump_message = PymapMaildir._dump_message

        def dump_message(
            self: PymapMaildir, message: Any, target: Any, mangle_from_: bool = False
        ) -> None:
            if isinstance(message, _RawMaildirMessage):
                target.write(message.raw)
            else:
                original_dump_message(self, message, target, mangle_from_)

        PymapMaildir._dump_message = dump_message  # type: ignore[method-assign,assignment]
        MaildirBackendMessage.to_maildir = classmethod(_to_maildir)  # type: ignore[assignment]
        MailboxData.copy = _copy  # type: ignore[method-assign]
        FileWriteable.file_write = _file_write  # type: ignore[method-assign]
        MaildirBackendMessage.load_content = _load_content  # type: ignore[method-assign]
        MailboxData.reset = _reset  # type: ignore[method-assign]
        MailboxData.move = move  # type: ignore[method-assign]
        MailboxData.append = append  # type: ignore[method-assign]
        MailboxData.delete = delete  # type: ignore[method-assign]
        MailboxSet.add_mailbox = add_mailbox  # type: ignore[method-assign]
        _patched = True


class _RawMaildirMessage(MaildirMessage):
    """Maildir metadata (flags, subdir, date) plus the exact bytes to store."""

    def __init__(self, raw: bytes, metadata: MaildirMessage | None = None) -> None:
        super().__init__(metadata)
        self.raw = raw


def _to_maildir(
    cls: type[MaildirBackendMessage],
    append_msg: AppendMessage,
    recent: bool,
    maildir_flags: MaildirFlags,
) -> MaildirMessage:
    """``Message.to_maildir`` (APPEND) keeping the literal verbatim."""
    when = append_msg.when or datetime.now()
    maildir_msg = _RawMaildirMessage(bytes(append_msg.literal))
    maildir_msg.set_flags(maildir_flags.to_maildir(append_msg.flag_set))
    maildir_msg.set_subdir("new" if recent else "cur")
    maildir_msg.set_date(when.timestamp())
    return maildir_msg


async def _copy(
    self: MailboxData, uid: int, destination: MailboxData, *, recent: bool = False
) -> int | None:
    """``MailboxData.copy`` (COPY) that copies the message content too."""
    try:
        record, maildir_msg = await self._get_maildir_msg(uid)
        async with self.messages_lock.read_lock():
            raw = self._maildir.get_bytes(record.key)
    except (KeyError, FileNotFoundError):
        return None
    copy_msg = _RawMaildirMessage(raw, maildir_msg)
    copy_msg.set_subdir("new" if recent else "cur")
    async with destination.messages_lock.write_lock():
        dest_key = destination._maildir.add(copy_msg)
        dest_filename = dest_key + ":" + copy_msg.get_info()
    async with UidList.with_write(destination._path) as uidl:
        new_rec = Record(uidl.next_uid, record.fields, dest_filename)
        uidl.next_uid += 1
        uidl.set(new_rec)
    return new_rec.uid


def _file_write(self: FileWriteable) -> None:
    """``FileWriteable.file_write`` with the temporary file beside the target."""
    file_path = self.get_file(self.path)
    directory = os.path.dirname(file_path) or "."
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=".tmp-", delete=False) as tmp:
        self.write(tmp)
    os.rename(tmp.name, file_path)
    self._touched = False


async def _load_content(
    self: MaildirBackendMessage, requirement: FetchRequirement
) -> LoadedMessage:
    """``Message.load_content`` serving the stored bytes verbatim."""
    maildir = self._maildir
    key = self._key
    if key is None or maildir is None or requirement.has_none(FetchRequirement.CONTENT):
        return LoadedMessage(self, requirement, None)
    try:
        raw = maildir.get_bytes(key)
    except (KeyError, FileNotFoundError):
        found = await _read_by_key(maildir, key)
        if found is None:
            return LoadedMessage(self, requirement, None)
        raw = found
    return LoadedMessage(self, requirement, MessageContent.parse(raw))


async def _read_by_key(maildir: Any, key: str) -> bytes | None:
    """A message file found by its key in ``cur/`` or ``new/`` directly.

    The maildir's table of contents is shared by the server's I/O threads, and a refresh
    empties it before filling it again, so a lookup that races a refresh misses a message
    that is there (and the client would be served an empty body).
    """
    for pause in (0.0, 0.005, 0.02, 0.05):
        await asyncio.sleep(pause)
        for subdir in ("new", "cur"):  # the order files move in: one moving is seen in cur
            directory = os.path.join(maildir._path, subdir)
            with suppress(FileNotFoundError):
                for name in os.listdir(directory):
                    if name == key or name.startswith(key + maildir.colon):
                        with suppress(FileNotFoundError):
                            return Path(directory, name).read_bytes()
    return None


async def _reset(self: MailboxData) -> MailboxData:
    """``MailboxData.reset``: give UIDs to new files, oldest first."""
    maildir = self._maildir
    async with self.messages_lock.read_lock():
        maildir._refresh()  # type: ignore[attr-defined]
        toc: dict[str, str] = dict(maildir._toc)  # type: ignore[attr-defined]
    colon = maildir.colon
    async with UidList.with_write(self._path) as uidl:
        for rec in uidl.records:
            toc.pop(rec.key, None)
        for key in sorted(toc, key=_arrival_order):
            name = os.path.basename(toc[key])
            info = name.rsplit(colon, 1)[1] if colon in name else ""
            fields = {
                "E": str(ObjectId.random_email_id()),
                "T": str(ObjectId.random_thread_id()),
            }
            uidl.set(Record(uidl.next_uid, fields, f"{key}:{info}"))
            uidl.next_uid += 1
    self._uid_validity = uidl.uid_validity
    self._next_uid = uidl.next_uid
    return self


def _arrival_order(key: str) -> tuple[int, int, str]:
    """Sort key for maildir unique names (``<seconds>.M<micros>P<pid>Q<n>...``)."""
    match = _ARRIVAL.match(key)
    if match is None:
        return (1 << 62, 0, key)
    return (int(match.group(1)), int(match.group(2) or 0), key)


async def _forget_uids(mailbox: MailboxData, uids: Iterable[int]) -> None:
    """Drop the UID-list records of messages whose files are gone (moved/expunged)."""
    async with UidList.with_write(mailbox._path) as uidl:
        for uid in uids:
            with suppress(KeyError):
                uidl.remove(uid)


async def _drop_twins(mailbox: MailboxData, uid: int) -> None:
    """Drop other UIDs of the file `uid` names: a command that rescans the folder between a
    MOVE's rename and its UID-list write gives the moved file a UID of its own."""
    async with UidList.with_write(mailbox._path) as uidl:
        with suppress(KeyError):
            key = uidl.get(uid).key
            for twin in [r.uid for r in uidl.records if r.key == key and r.uid != uid]:
                uidl.remove(twin)


def _merge_keywords(mailbox_dir: Path, keywords: Sequence[str]) -> None:
    """Add missing ``keywords`` to a mailbox's keyword table, never renumbering."""
    path = mailbox_dir / _KEYWORDS_FILE
    table: dict[int, str] = {}
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            if line.strip():
                number, keyword = line.split()
                table[int(number)] = keyword
    except FileNotFoundError:
        pass
    known = set(table.values())
    missing = [keyword for keyword in keywords if keyword not in known]
    if not missing:
        return
    index = max(table, default=-1) + 1
    for keyword in missing:
        if index >= _MAX_KEYWORDS:
            _log.warning("%s: no room for keyword %s (max %d)", path, keyword, _MAX_KEYWORDS)
            break
        table[index] = keyword
        index += 1
    text = "".join(f"{i} {kwd}\n" for i, kwd in sorted(table.items()))
    tmp = path.with_name(f".{_KEYWORDS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.rename(tmp, path)


class _DeliveryHandler:
    """aiosmtpd handler: accepts configured recipients and delivers into their INBOX."""

    def __init__(self, server: LocalMailServer) -> None:
        self._server = server

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self._server.mailbox_for(address) is None:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        if content is None:  # pragma: no cover - aiosmtpd always sets it
            return "451 4.3.0 no message content"
        by_mailbox: dict[MailUser, list[str]] = {}
        for rcpt in envelope.rcpt_tos:
            user = self._server.mailbox_for(rcpt)
            if user is not None:
                by_mailbox.setdefault(user, [])
                if self._server.user_for(rcpt) is None:  # caught for an address not here
                    by_mailbox[user].append(_strip_angle(rcpt))
        for user, caught in by_mailbox.items():
            trace = _trace_headers(server, session, envelope, user.address, caught)
            try:
                await asyncio.to_thread(self._server.deliver, user.address, trace + content)
            except Exception:
                _log.exception("local delivery to %s failed", user.address)
                return "451 4.3.0 local delivery failed"
            _log.info(
                "delivered %d bytes from <%s> to %s",
                len(content),
                envelope.mail_from or "",
                user.address,
            )
        return "250 2.0.0 OK delivered"


class _XOAuth2DeliveryHandler(_DeliveryHandler):
    """Also takes SMTP AUTH XOAUTH2 (RFC 4954 framing, the token checked by the server's check)."""

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            encoded: bytes = args[1].encode()
        else:
            challenged = await server.challenge_auth("")
            if not isinstance(challenged, bytes):
                return AuthResult(success=False)
            encoded = base64.b64encode(challenged)
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except ValueError:
            return AuthResult(success=False, handled=False)
        match = _XOAUTH2.fullmatch(decoded)
        check = self._server.xoauth2
        if match is None or check is None:
            return AuthResult(success=False, handled=False)
        user, token = match.group(1).decode(errors="replace"), match.group(2).decode()
        if not check(user, token):
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user)


_XOAUTH2 = re.compile(rb"user=([^\x01]*)\x01auth=[Bb]earer ([^\x01]*)\x01\x01")


def _trace_headers(
    server: SMTP, session: Session, envelope: Envelope, rcpt: str, caught: Sequence[str] = ()
) -> bytes:
    """The ``Return-Path:`` and ``Received:`` lines prepended to a delivered message, with
    ``X-Original-To:`` between them for mail the catch-all mailbox took for `caught`."""
    peer = session.peer
    peer_ip = peer[0] if isinstance(peer, tuple) and peer else str(peer or "unknown")
    helo = session.host_name or "unknown"
    if envelope.smtp_utf8:
        protocol = "UTF8SMTP"
    elif session.extended_smtp:
        protocol = "ESMTP"
    else:
        protocol = "SMTP"
    sender = envelope.mail_from or ""
    received = (
        f"Received: from {helo} ([{peer_ip}])\r\n"
        f"\tby {server.hostname} ({_IDENT}) with {protocol}\r\n"
        f"\tfor <{rcpt}>; {formatdate(localtime=True)}\r\n"
    )
    original_to = f"X-Original-To: {', '.join(caught)}\r\n" if caught else ""
    return f"Return-Path: <{sender}>\r\n{original_to}{received}".encode()


class LocalMailServer:
    """IMAP (pymap, maildir backend) plus SMTP (aiosmtpd) on loopback, in-process.

    Both listeners run on the event loop that calls :meth:`start`. Users are
    (re)created on every start: the configured list is authoritative for logins
    (users from earlier runs that are no longer configured lose their login but
    keep their mail on disk), passwords are re-hashed, and existing mail and
    UIDVALIDITY values are untouched.

    Args:
        data_dir: Directory holding the user database and the maildirs.
        users: The mailboxes to serve.
        host: Interface both listeners bind to.
        imap_port: IMAP port.
        smtp_port: SMTP port.
        keywords: IMAP keywords (user flags) that every mailbox can store. pymap's
            maildir backend only persists keywords from a per-mailbox table of
            at most 26; they are added to (never renumbered in) each mailbox's
            ``dovecot-keywords`` at start, and copied into folders made by CREATE.
        tls: A server-side TLS context (certificate and key loaded). Without
            ``implicit_tls`` both listeners offer STARTTLS, and IMAP refuses a
            login before it; SMTP then offers AUTH only after it.
        implicit_tls: Both listeners speak TLS from the first byte (IMAPS, SMTPS).
        xoauth2: A token check; when given, IMAP and SMTP also accept XOAUTH2
            logins whose access token it approves.
        catch_all: The address of one of `users` whose INBOX takes SMTP mail for every
            address that has no mailbox here, with an ``X-Original-To:`` line naming those
            addresses (as development mail servers such as Mailpit keep all mail). Without
            it such a recipient is refused with 550.
    """

    def __init__(
        self,
        data_dir: Path,
        users: Sequence[MailUser],
        *,
        host: str = "127.0.0.1",
        imap_port: int = 1143,
        smtp_port: int = 1025,
        keywords: Sequence[str] = DEFAULT_KEYWORDS,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        xoauth2: TokenCheck | None = None,
        catch_all: str | None = None,
    ) -> None:
        if not users:
            raise ValueError("at least one MailUser is required")
        by_address: dict[str, MailUser] = {}
        for user in users:
            key = user.address.casefold()
            if key in by_address:
                raise ValueError(f"duplicate mailbox address: {user.address!r}")
            by_address[key] = user
        self.data_dir: Final = Path(data_dir)
        self.users: Final = tuple(users)
        self.host: Final = host
        self.imap_port: Final = imap_port
        self.smtp_port: Final = smtp_port
        self._by_address = by_address
        for keyword in keywords:
            if not _KEYWORD.fullmatch(keyword):
                raise ValueError(f"not a usable IMAP keyword: {keyword!r}")
        if len(set(keywords)) > _MAX_KEYWORDS:
            raise ValueError(f"at most {_MAX_KEYWORDS} keywords are supported")
        self.keywords: Final = tuple(dict.fromkeys(keywords))
        self._counter = itertools.count()
        self._counter_lock = threading.Lock()
        self._hostname = _maildir_safe(socket.gethostname() or "localhost")
        self._running = False
        self._io_executor: ThreadPoolExecutor | None = None
        self._cpu_executor: ThreadPoolExecutor | None = None
        self._imap_server: asyncio.AbstractServer | None = None
        self._smtp_server: asyncio.AbstractServer | None = None
        self._imap_tasks: set[asyncio.Task[Any]] = set()
        self._imap_writers: set[asyncio.StreamWriter] = set()
        self._smtp_protocols: set[SMTP] = set()
        self._stack = AsyncExitStack()
        self.tls: Final = tls
        self.implicit_tls: Final = implicit_tls and tls is not None
        self.xoauth2: Final = xoauth2
        if catch_all is not None and catch_all.casefold() not in by_address:
            raise ValueError(f"the catch-all mailbox {catch_all!r} is not one of the users")
        self.catch_all: Final = catch_all

    # -- public API -----------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._running

    def user_for(self, address: str) -> MailUser | None:
        """The configured user whose address matches ``address`` (case-insensitive)."""
        return self._by_address.get(_strip_angle(address).casefold())

    def mailbox_for(self, address: str) -> MailUser | None:
        """Where SMTP delivers mail for `address`: its user's mailbox, else the catch-all."""
        user = self.user_for(address)
        if user is None and self.catch_all is not None:
            return self.user_for(self.catch_all)
        return user

    def maildir_path(self, address: str) -> Path:
        """The INBOX maildir directory of the user with this address."""
        user = self.user_for(address)
        if user is None:
            raise UnknownMailboxError(address)
        return self.data_dir / user.address

    async def start(self) -> None:
        """Create the users and start the IMAP and SMTP listeners."""
        if self._running:
            raise RuntimeError("LocalMailServer already started")
        _patch_pymap()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for user in self.users:
            self._prepare_mailboxes(self.data_dir / user.address)
        self._io_executor = ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="localmail-imap-io"
        )
        self._cpu_executor = ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="localmail-imap-cpu"
        )
        try:
            args = _pymap_args(self.data_dir, self.host, self.imap_port)
            config = _LocalConfig(
                args,
                host=self.host,
                port=self.imap_port,
                debug=False,
                tls_enabled=self.tls is not None and not self.implicit_tls,
                ssl_context=self.tls,
                cert_file=None,
                key_file=None,
                base_dir=str(self.data_dir),
                layout=_LAYOUT,
                colon=args.colon,
                subsystem=Subsystem.for_threading(self._io_executor),
                cpu_subsystem=Subsystem.for_threading(self._cpu_executor),
                hash_context=BuiltinHash(rounds=_PASSWORD_HASH_ROUNDS),
                reject_dnsbl=False,
            )
            config.xoauth2 = self.xoauth2
            login = _Login(config)
            backend = MaildirBackend(login, config)
            # pymap finds its concurrency subsystem in a context variable. Give
            # the listener its own copy of the context so that several servers
            # (or the caller) never see each other's settings.
            ctx = contextvars.copy_context()
            ctx.run(config.apply_context)
            await asyncio.create_task(self._start_servers(backend, config), context=ctx)
        except BaseException:
            await self._shutdown()
            raise
        self._running = True
        _log.info(
            "localmail started imap=%s:%d smtp=%s:%d data_dir=%s users=%s",
            self.host,
            self.imap_port,
            self.host,
            self.smtp_port,
            self.data_dir,
            ", ".join(u.address for u in self.users),
        )

    async def stop(self) -> None:
        """Stop both listeners, drop open connections and release worker threads."""
        if not self._running:
            return
        self._running = False
        await self._shutdown()
        _log.info("localmail stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def deliver(self, recipient: str, raw: bytes) -> None:
        """Deliver ``raw`` verbatim into ``recipient``'s INBOX (blocking file I/O).

        This is the path SMTP delivery takes too (the SMTP handler adds the trace
        headers first). The message is written to ``tmp/``, flushed to disk and
        renamed into ``new/``; pymap gives it a UID the next time the mailbox is
        selected, polled (NOOP and any other command on the selected mailbox) or
        inspected with STATUS. It works whether or not the server is running.

        Raises:
            UnknownMailboxError: No configured user has this address.
        """
        maildir = self.maildir_path(recipient)
        self._ensure_maildir(maildir)
        name = self._unique_name()
        tmp_path = maildir / "tmp" / name
        try:
            with open(tmp_path, "xb") as fp:
                fp.write(raw)
                fp.flush()
                os.fsync(fp.fileno())
            os.rename(tmp_path, maildir / "new" / name)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    # -- internals ------------------------------------------------------

    async def _start_servers(self, backend: MaildirBackend, config: _LocalConfig) -> None:
        """Runs inside the pymap context: users, then the IMAP and SMTP listeners."""
        await self._sync_users(backend.login, config)
        await backend.start(self._stack)

        imap_server = IMAPServer(backend.login, config)

        async def imap_connection(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: SocketInfo
        ) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._imap_tasks.add(task)
            self._imap_writers.add(writer)
            try:
                await imap_server(reader, _coalescing(writer), sock_info)
            except Exception:
                _log.exception("IMAP connection failed")
            finally:
                self._imap_writers.discard(writer)
                if task is not None:
                    self._imap_tasks.discard(task)

        pp_reader = ProxyProtocolReader(config.proxy_protocol)
        self._imap_server = await asyncio.start_server(
            pp_reader.get_callback(imap_connection),
            host=self.host,
            port=self.imap_port,
            reuse_address=True,
            ssl=self.tls if self.implicit_tls else None,
        )

        loop = asyncio.get_running_loop()
        handler: _DeliveryHandler = (
            _DeliveryHandler(self) if self.xoauth2 is None else _XOAuth2DeliveryHandler(self)
        )
        logins = self.tls is not None or self.xoauth2 is not None

        def smtp_factory() -> SMTP:
            protocol = TrackedSMTP(
                handler,
                self._smtp_protocols,
                data_size_limit=MAX_MESSAGE_SIZE,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=_SERVER_NAME,
                ident=_IDENT,
                loop=loop,
                tls_context=None if self.implicit_tls else self.tls,
                auth_require_tls=self.tls is not None and not self.implicit_tls,
                authenticator=self._check_password if logins else None,
            )
            return protocol

        self._smtp_server = await loop.create_server(
            smtp_factory,
            host=self.host,
            port=self.smtp_port,
            reuse_address=True,
            ssl=self.tls if self.implicit_tls else None,
        )

    def _check_password(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """SMTP AUTH PLAIN and LOGIN against the configured users."""
        if isinstance(data, LoginPassword):
            user = self.user_for(data.login.decode(errors="replace"))
            if user is not None and data.password.decode(errors="replace") == user.password:
                return AuthResult(success=True, auth_data=user.address)
        return AuthResult(success=False, handled=False)

    async def _sync_users(self, login: Login, config: _LocalConfig) -> None:
        """Make the pymap user database match the configured users."""
        passwords = Passwords(config)
        configured = {user.address for user in self.users}
        admin = frozenset({"admin"})
        for user in self.users:
            hashed = await passwords.hash_password(user.password)
            metadata = UserMetadata(
                config,
                user.address,
                password=hashed,
                params=frozendict({"mailbox_path": user.address}),
            )
            await Identity(config, login.tokens, user.address, None, admin).set(metadata)
        for name in _existing_user_names(self.data_dir):
            if name not in configured:
                with suppress(UserNotFound):
                    await Identity(config, login.tokens, name, None, admin).delete()
                _log.info("removed login of unconfigured user %s (mail kept)", name)

    async def _shutdown(self) -> None:
        servers = [s for s in (self._imap_server, self._smtp_server) if s is not None]
        self._imap_server = self._smtp_server = None
        for server in servers:
            server.close()
        for protocol in list(self._smtp_protocols):
            if protocol.transport is not None:
                protocol.transport.close()
        for writer in list(self._imap_writers):
            writer.transport.abort()
        tasks = list(self._imap_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        # Let aiosmtpd's connection_lost callbacks run.
        await asyncio.sleep(0)
        executors = [e for e in (self._io_executor, self._cpu_executor) if e is not None]
        self._io_executor = self._cpu_executor = None
        for executor in executors:
            # Wait so that in-flight maildir writes finish before a restart.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()

    def _prepare_mailboxes(self, inbox: Path) -> None:
        """Create the INBOX maildir and give every mailbox the keyword table."""
        self._ensure_maildir(inbox)
        _merge_keywords(inbox, self.keywords)
        layout = MaildirLayout.get(str(inbox), _LAYOUT, PymapMaildir)
        for folder in layout.list_folders("/"):
            _merge_keywords(Path(layout.get_path(folder, "/")), self.keywords)

    def _ensure_maildir(self, path: Path) -> None:
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    def _unique_name(self) -> str:
        now = time.time()
        with self._counter_lock:
            seq = next(self._counter)
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros:06d}P{os.getpid()}Q{seq}R{os.urandom(4).hex()}.{self._hostname}"


class _CoalescingWriter:
    """Buffers pymap's many small writes and sends them at ``drain()``.

    pymap writes each response piece by piece (a FETCH line is several writes,
    the closing CRLF another), and asyncio sends every ``write`` at once, so a
    response went out as many tiny TCP segments. That costs syscalls, and it
    trips clients that read non-blocking: imap-tools' ``idle.poll()`` aborts
    with "unterminated line" when it sees a line without its CRLF. pymap always
    calls ``drain()`` after writing a response.
    """

    _FLUSH_AT: Final = 1 << 20

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self._FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write(bytes(self._buffer))
            self._buffer.clear()

    async def drain(self) -> None:
        self._flush()
        await self._writer.drain()

    def close(self) -> None:
        with suppress(Exception):
            self._flush()
        self._writer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


def _coalescing(writer: asyncio.StreamWriter) -> asyncio.StreamWriter:
    return cast(asyncio.StreamWriter, _CoalescingWriter(writer))


class TrackedSMTP(SMTP):
    """aiosmtpd's SMTP protocol, registering itself so :meth:`stop` can close it."""

    def __init__(self, handler: Any, registry: set[SMTP], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._registry = registry

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._registry.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        super().connection_lost(exc)


def _existing_user_names(data_dir: Path) -> list[str]:
    """Names in pymap's passwd file (read directly: pymap has no list API)."""
    try:
        text = (data_dir / "pymap-etc-passwd").read_text()
    except FileNotFoundError:
        return []
    names: list[str] = []
    for line in text.splitlines():
        if not line:
            continue
        name = ""
        escaped = False
        for ch in line:
            if escaped:
                name += ch
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == ":":
                break
            else:
                name += ch
        names.append(name)
    return names


def _strip_angle(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


def _maildir_safe(name: str) -> str:
    return name.replace("/", "\\057").replace(":", "\\072")


# -- CLI --------------------------------------------------------------------


def _parse_user(spec: str) -> MailUser:
    address, sep, password = spec.partition(":")
    if not sep:
        # Do not echo the value: it may be a password given without its address.
        raise ValueError("expected ADDRESS:PASSWORD (no ':' found)")
    return MailUser(address.strip(), password)


def _read_users_file(path: Path) -> list[MailUser]:
    users: list[MailUser] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            users.append(_parse_user(stripped))
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
    return users


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.localmail",
        description="Local IMAP (pymap maildir) + SMTP (aiosmtpd) server for the demo.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="mail storage directory")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (loopback)")
    parser.add_argument("--imap-port", type=int, default=1143)
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="ADDRESS:PASSWORD",
        help="a mailbox of this local demo server (repeatable)",
    )
    parser.add_argument(
        "--users-file",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="file with one ADDRESS:PASSWORD per line (# comments allowed)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    return parser


async def _serve(server: LocalMailServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(
            f"localmail ready imap={server.host}:{server.imap_port} "
            f"smtp={server.host}:{server.smtp_port}",
            flush=True,
        )
        await stop.wait()


class MailServerThread:
    """Runs a :class:`LocalMailServer` on an event loop of its own, in a thread.

    pymap does some work on its event loop synchronously (re-reading a folder, parsing an
    odd message); on a loop of its own that never stalls the caller's loop — a worker's,
    a test's.
    """

    def __init__(self, server: LocalMailServer) -> None:
        self.server: Final = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._stopped.wait()
            finally:
                await self.server.stop()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve(),), name="localmail", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the local mail server did not start in time")
        if failure:
            raise failure[0]

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout)
        self._loop = self._thread = self._stopped = None

    def deliver(self, recipient: str, raw: bytes) -> None:
        self.server.deliver(recipient, raw)

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; runs until SIGINT/SIGTERM."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        users = [_parse_user(spec) for spec in args.user]
        for users_file in args.users_file:
            users.extend(_read_users_file(users_file))
        if not users:
            parser.error("give at least one --user or --users-file")
        server = LocalMailServer(
            args.data_dir,
            users,
            host=args.host,
            imap_port=args.imap_port,
            smtp_port=args.smtp_port,
        )
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_serve(server))
    except OSError as exc:  # e.g. a port already in use
        _log.error("localmail failed to start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""pymap's maildir backend as the local server uses it: its configuration and login, and the
few internals adjusted on first start (byte-exact BODY[], UIDs in arrival order, moves that
do not slow a mailbox down, keyword tables kept)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import tempfile
import threading
from argparse import Namespace
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from datetime import datetime
from mailbox import MaildirMessage
from pathlib import Path
from typing import Any, Final, cast

from pymap.backend.maildir import Config as MaildirConfig
from pymap.backend.maildir import Identity, Login, MaildirBackend
from pymap.backend.maildir.flags import MaildirFlags
from pymap.backend.maildir.io import FileWriteable
from pymap.backend.maildir.mailbox import LoadedMessage, MailboxData, MailboxSet
from pymap.backend.maildir.mailbox import Maildir as PymapMaildir
from pymap.backend.maildir.mailbox import Message as MaildirBackendMessage
from pymap.backend.maildir.uidlist import Record, UidList
from pymap.exceptions import InvalidAuth
from pymap.imap import IMAPService
from pymap.mime import MessageContent
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials import FetchRequirement, ObjectId
from pysasl import SASLAuth
from pysasl.creds.external import ExternalCredentials, ExternalVerificationRequired
from pysasl.creds.server import ServerCredentials

from devtools.localmail.smtp import SERVER_NAME

_log = logging.getLogger("devtools.localmail")


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


TokenCheck = Callable[[str, str], bool]
"""Whether an XOAUTH2 access token (second argument) lets a user (first) log in."""


class LocalConfig(MaildirConfig):
    """pymap maildir config with a fixed greeting (no FQDN lookup per connection), and
    XOAUTH2 among the login mechanisms when a token check is set."""

    xoauth2: TokenCheck | None = None

    @property
    def greeting(self) -> bytes:
        return b"Server ready " + SERVER_NAME.encode("ascii")

    @property
    def tls_auth(self) -> SASLAuth:
        if self.xoauth2 is None:
            return super().tls_auth
        return SASLAuth.named([b"PLAIN", b"LOGIN", b"XOAUTH2"])


class LocalLogin(Login):
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


def pymap_args(data_dir: Path, host: str, port: int) -> Namespace:
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
MAX_KEYWORDS: Final = 26
KEYWORD_PATTERN = re.compile(r"[!#$&'+\-.0-9;<=>?@A-Z^_`a-z|~]{1,64}")
MAILDIR_LAYOUT: Final = "++"
_ARRIVAL = re.compile(r"^(\d+)\.(?:M(\d+))?")


def patch_pymap() -> None:
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


def merge_keywords(mailbox_dir: Path, keywords: Sequence[str]) -> None:
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
        if index >= MAX_KEYWORDS:
            _log.warning("%s: no room for keyword %s (max %d)", path, keyword, MAX_KEYWORDS)
            break
        table[index] = keyword
        index += 1
    text = "".join(f"{i} {kwd}\n" for i, kwd in sorted(table.items()))
    tmp = path.with_name(f".{_KEYWORDS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="ascii")
    os.rename(tmp, path)


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


def coalescing(writer: asyncio.StreamWriter) -> asyncio.StreamWriter:
    return cast(asyncio.StreamWriter, _CoalescingWriter(writer))

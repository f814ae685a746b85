"""One logged-in IMAP session: connecting (TLS, STARTTLS, XOAUTH2) and the exact commands
ace-email issues (UID SEARCH, FETCH, MOVE, APPEND), on imap-tools' imaplib client."""

from __future__ import annotations

import imaplib
import logging
import re
import socket
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError
from imap_tools.imap_utf7 import utf7_decode, utf7_encode

from ace_email.analysis import mime
from ace_email.config.accounts import AccountSettings
from ace_email.config.base import is_loopback
from ace_email.config.mail_servers import AuthMethod, ImapSettings, Security
from ace_email.config.oauth2 import OAuth2Settings
from ace_email.contracts.message import MessageRef
from ace_email.mail.errors import ImapError, ImapLoginError, ImapTlsError, tls_failure
from ace_email.mail.oauth2 import TOKENS, OAuth2Error, TokenProvider

log = logging.getLogger(__name__)

_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_FETCH_INTERNALDATE = re.compile(rb'INTERNALDATE "[^"]+"')
_COPYUID = re.compile(rb"COPYUID (\d+) ([\d:,]+) ([\d:,]+)")


@dataclass
class Fetched:
    uid: int
    size: int = 0
    flags: tuple[str, ...] = ()
    raw: bytes = b""
    arrived_at: datetime | None = None

    def ref(
        self, account: str, folder: str, uidvalidity: int, message_id: str | None
    ) -> MessageRef:
        """The claim check for this message (fetched with its body) where it lies now."""
        return MessageRef(
            account=account,
            folder=folder,
            uidvalidity=uidvalidity,
            uid=self.uid,
            key=mime.message_key(self.raw),
            message_id=message_id,
            size=self.size or len(self.raw),
        )


def quote_mailbox(name: str) -> str:
    encoded = utf7_encode(name).decode("ascii")
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str | None:
    """An IMAP quoted string, or None where the value cannot be one (8-bit or CR/LF)."""
    if any(ord(c) > 126 or c in "\r\n\0" for c in value):
        return None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
            if arrived := _FETCH_INTERNALDATE.search(head):
                entry.arrived_at = internal_date(arrived.group(0))
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


def internal_date(field: bytes) -> datetime | None:
    """When the server received a message: its `INTERNALDATE "..."` item, in UTC."""
    parsed = imaplib.Internaldate2tuple(field)
    return datetime.fromtimestamp(time.mktime(parsed), UTC) if parsed else None


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


class _StartTlsMailBox(MailBoxStartTls):
    """STARTTLS or nothing: a server that does not offer it gets no command, let alone a login."""

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4(self._host, self._port, timeout=self._timeout)
        if "STARTTLS" not in client.capabilities:
            with suppress(Exception):
                client.shutdown()
            raise _NoStartTls
        client.starttls(self._ssl_context)
        return client


class _NoStartTls(Exception):
    pass


def _mailbox(imap: ImapSettings) -> BaseMailBox:
    if imap.security is Security.SSL:
        return MailBox(
            imap.host, imap.port, timeout=imap.timeout_seconds, ssl_context=imap.tls_context()
        )
    if imap.security is Security.STARTTLS:
        return _StartTlsMailBox(
            imap.host, imap.port, timeout=imap.timeout_seconds, ssl_context=imap.tls_context()
        )
    return MailBoxUnencrypted(imap.host, imap.port, timeout=imap.timeout_seconds)


def connect(account: AccountSettings, tokens: TokenProvider = TOKENS) -> ImapSession:
    """Connect and log in; refreshes the capability list, which imap-tools leaves stale."""
    imap = account.imap
    where = f"{account.name}: IMAP {imap.host}:{imap.port}"
    if (
        (imap.security is Security.NONE or not imap.tls_verify)
        and not is_loopback(imap.host)
        and not imap.allow_plaintext
    ):
        raise ImapError(
            f"{account.name}: imap.security is '{imap.security.value}' with tls_verify = "
            f"{str(imap.tls_verify).lower()} for non-loopback host {imap.host}; set "
            "imap.allow_plaintext = true to expose the credentials anyway",
            transient=False,
        )
    if not imap.tls_verify and imap.security is not Security.NONE:
        log.warning("%s: TLS certificate not verified (imap.tls_verify = false)", where)
    try:
        mailbox = _mailbox(imap)
    except _NoStartTls:
        raise ImapTlsError(
            f"{where} does not offer STARTTLS, which imap.security = 'starttls' requires; "
            "nothing was sent (no fallback to plaintext). If the port speaks TLS from the "
            "start, set imap.security = 'ssl'"
        ) from None
    except (OSError, imaplib.IMAP4.error) as exc:
        if described := tls_failure(where, exc):
            raise ImapTlsError(described) from None
        raise ImapError(
            f"{account.name}: cannot connect to IMAP {imap.host}:{imap.port}: {exc}"
        ) from None
    sock = getattr(mailbox.client, "sock", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if imap.auth is AuthMethod.XOAUTH2 and imap.oauth2 is not None:
        _xoauth2_login(f"{account.name}: imap", where, mailbox, imap, imap.oauth2, tokens)
    else:
        try:
            mailbox.login(imap.username or "", imap.secret() or "", initial_folder=None)
        except MailboxLoginError:
            _close_client(mailbox)
            raise ImapLoginError(
                f"{account.name}: IMAP login as {imap.username!r} "
                f"at {imap.host}:{imap.port} was refused"
            ) from None
    status, data = mailbox.client.capability()
    if status == "OK" and data and isinstance(data[-1], bytes):
        mailbox.client.capabilities = tuple(data[-1].decode().upper().split())
    return ImapSession(account.name, mailbox)


def _close_client(mailbox: BaseMailBox) -> None:
    with suppress(Exception):
        mailbox.client.shutdown()


def _xoauth2_login(
    owner: str,
    where: str,
    mailbox: BaseMailBox,
    imap: ImapSettings,
    oauth2: OAuth2Settings,
    tokens: TokenProvider,
) -> None:
    """AUTHENTICATE XOAUTH2; a refused token is replaced by a fresh one once."""
    if "AUTH=XOAUTH2" not in mailbox.client.capabilities:
        _close_client(mailbox)
        raise ImapLoginError(
            f"{where} does not offer AUTH=XOAUTH2, which imap.auth = 'xoauth2' requires"
        )
    for attempt in (1, 2):
        try:
            token = tokens.token(owner, oauth2, timeout=imap.timeout_seconds)
        except OAuth2Error as exc:
            _close_client(mailbox)
            if exc.permanent:
                raise ImapLoginError(str(exc).replace("oauth2.", "imap.oauth2.", 1)) from None
            raise ImapError(str(exc)) from None
        try:
            status, _ = mailbox.client.authenticate(
                "XOAUTH2", _XOAuth2Response(imap.username or "", token)
            )
        except imaplib.IMAP4.abort as exc:
            _close_client(mailbox)
            raise ImapError(f"{where}: connection lost during the XOAUTH2 login: {exc}") from None
        except imaplib.IMAP4.error:
            status = "NO"
        if status == "OK":
            return
        tokens.invalidate(owner, oauth2, token)
        if attempt == 2:
            _close_client(mailbox)
            raise ImapLoginError(
                f"{where}: XOAUTH2 login as {imap.username!r} was refused with a freshly "
                "issued token; check that the app may use IMAP for this mailbox "
                "(permissions, scope)"
            )


class _XOAuth2Response:
    """The client's XOAUTH2 response; an empty line to a server's error challenge."""

    def __init__(self, username: str, token: str) -> None:
        self._first = f"user={username}\x01auth=Bearer {token}\x01\x01".encode()
        self._sent = False

    def __call__(self, challenge: bytes) -> bytes:
        if self._sent:
            return b""
        self._sent = True
        return self._first

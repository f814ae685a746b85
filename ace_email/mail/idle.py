"""Push from the mail server: an IMAP IDLE session on one folder that tells when new mail
arrived there (RFC 2177), re-issued before servers drop it.

Only EXISTS counts as news: the EXPUNGEs of ace-email's own claims would otherwise make
every claim ask for a poll. The session is its own connection, never a pooled one: IDLE
holds it for as long as it waits.
"""

from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from ace_email.config.accounts import AccountSettings
from ace_email.mail.errors import ImapError
from ace_email.mail.imap import ImapSession, connect

log = logging.getLogger(__name__)
T = TypeVar("T")

# RFC 2177: a client should re-issue IDLE at least every 29 minutes; servers drop an IDLE
# connection after 30. Renewed well before.
RENEW_SECONDS = 20 * 60
_EXISTS = re.compile(rb"^\* \d+ EXISTS", re.IGNORECASE)


class InboxWatch:
    """One folder watched by IDLE; `wait` blocks on the socket for at most its timeout."""

    def __init__(self, account: AccountSettings, folder: str) -> None:
        self._account = account
        self._folder = folder
        self._session: ImapSession | None = None
        self._idle_since = 0.0

    def open(self) -> bool:
        """Log in, examine the folder and start IDLE; False where the server offers no IDLE."""
        session = self._session = connect(self._account)
        if "IDLE" not in session.client.capabilities:
            self.close()
            return False
        session.select(self._folder, readonly=True)
        self._guard(session.mailbox.idle.start)
        self._idle_since = time.monotonic()
        return True

    def wait(self, timeout: float) -> bool:
        """True when the server told of new mail within `timeout` seconds."""
        session = self._session
        if session is None:
            raise ImapError(f"{self._account.name}: the IDLE session is closed")
        if time.monotonic() - self._idle_since > RENEW_SECONDS:
            self._guard(session.mailbox.idle.stop)
            self._guard(session.mailbox.idle.start)
            self._idle_since = time.monotonic()
        lines = self._guard(lambda: session.mailbox.idle.poll(timeout=timeout))
        for line in lines:
            if line.startswith(b"* BYE"):
                raise ImapError(f"{self._account.name}: the IMAP server ended the IDLE session")
        return any(_EXISTS.match(line) for line in lines)

    def interrupt(self) -> None:
        """Wake a `wait` in progress, from another thread: the session is over."""
        session = self._session
        sock = getattr(session.client, "sock", None) if session is not None else None
        if isinstance(sock, socket.socket):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        with suppress(Exception):
            session.mailbox.idle.stop()  # type: ignore[no-untyped-call]
        with suppress(Exception):
            session.client.logout()
        with suppress(Exception):
            session.client.shutdown()

    def _guard(self, call: Callable[[], T]) -> T:
        imap = self._account.imap
        try:
            return call()
        except (TimeoutError, OSError, EOFError, ssl.SSLError, imaplib.IMAP4.error) as exc:
            raise ImapError(
                f"{self._account.name}: IMAP IDLE at {imap.host}:{imap.port} failed: "
                f"{exc or type(exc).__name__}"
            ) from None

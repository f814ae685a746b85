"""SMTP delivery into the local mailboxes (aiosmtpd): known recipients, the catch-all,
XOAUTH2, and the trace headers a receiving server adds."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Sequence
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from devtools.localmail.users import MailUser, strip_angle

if TYPE_CHECKING:
    from devtools.localmail.server import LocalMailServer

_log = logging.getLogger("devtools.localmail")


#: Largest message accepted over SMTP, in bytes (64 MiB).
MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024

SERVER_NAME: Final = "localhost"
IDENT: Final = "ace-email localmail"


class DeliveryHandler:
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
                    by_mailbox[user].append(strip_angle(rcpt))
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


class XOAuth2DeliveryHandler(DeliveryHandler):
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
        f"\tby {server.hostname} ({IDENT}) with {protocol}\r\n"
        f"\tfor <{rcpt}>; {formatdate(localtime=True)}\r\n"
    )
    original_to = f"X-Original-To: {', '.join(caught)}\r\n" if caught else ""
    return f"Return-Path: <{sender}>\r\n{original_to}{received}".encode()


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

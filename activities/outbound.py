"""SMTP activities: the automatic reply and delivery to an agent's own address.

They are async (aiosmtplib); the IMAP bookkeeping around each send (the Sent folder and the
archive folder are the records of what left) runs on a thread, on the pooled sessions.
Each send has a deterministic Message-ID, so a retry first looks for its own record.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ace_email.analysis import mime
from ace_email.compose.auto_reply import ReplyParts, compose_auto_reply
from ace_email.compose.messages import build_resent
from ace_email.compose.templates import template_named
from ace_email.config.accounts import AccountSettings
from ace_email.config.base import ConfigError, is_loopback
from ace_email.config.mail_servers import AuthMethod, Security
from ace_email.config.oauth2 import OAuth2Settings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.base import Channel
from ace_email.contracts.mail_work import (
    AutoReplyRequest,
    AutoReplyResult,
    DeliverRequest,
    DeliverResult,
    ReplyResult,
    SendReplyRequest,
)
from ace_email.contracts.message import MessageRef
from ace_email.mail.oauth2 import TOKENS, OAuth2Error, TokenProvider
from activities.imap_session import (
    ImapError,
    ImapPool,
    ImapSession,
    quote_string,
    tls_failure,
)
from activities.mailbox import as_activity_error, locate, move

log = logging.getLogger(__name__)


class OutboundActivities:
    """Outgoing mail for the contact workflow."""

    def __init__(self, settings: Settings, pool: ImapPool) -> None:
        self._settings = settings
        self._pool = pool

    @activity.defn
    async def send_auto_reply(self, request: AutoReplyRequest) -> AutoReplyResult:
        """Send the acknowledgement once: the Sent folder is the record, checked first."""
        policy = request.policy
        message_id = ids.auto_reply_message_id(policy.name, request.ref.key, policy.return_address)
        try:
            account = self._settings.account(policy.name)
            template = template_named(request.template, self._settings.templates)
            async with (
                _one_try_at_a_time(message_id),
                smtp_connection(account) as smtp,
                self._pool.lease(policy.name) as session,
            ):
                if await asyncio.to_thread(_in_folder, session, policy.sent_folder, message_id):
                    return AutoReplyResult(message_id=message_id, sent=False)
                original = None
                if template.quote != "none":
                    original = await asyncio.to_thread(_original_text, session, request)
                raw = compose_auto_reply(
                    account.reply_sender(),
                    self._settings.templates,
                    request.template,
                    ReplyParts(
                        to=request.to,
                        sender_name=request.sender_name,
                        subject=request.subject,
                        reference=request.contact_ref,
                        queue=request.queue,
                        language=request.language,
                        message_id=message_id,
                        in_reply_to=request.original_message_id,
                        references=request.original_references,
                    ),
                    date=datetime.now(UTC),
                    original_text=original,
                )
                _still_in_time(account)
                await send(
                    smtp, account, sender=policy.return_address, recipient=request.to, raw=raw
                )
                await asyncio.to_thread(session.append, policy.sent_folder, raw)
        except (ImapError, ConfigError, OSError, EOFError) as exc:
            raise as_activity_error(exc) from None
        except ValueError as exc:  # a template that cannot render, an unusable address
            raise ApplicationError(
                f"{policy.name}: automatic reply with template {request.template!r}: {exc}",
                type="TemplateError",
                non_retryable=True,
            ) from None
        return AutoReplyResult(message_id=message_id, sent=True)

    @activity.defn
    async def deliver_to_agent(self, request: DeliverRequest) -> DeliverResult:
        """Resend the original to the agent's address, then archive it: the archive is the record.

        If the message is no longer in processing but in the archive, an earlier try got
        through and archived it: nothing is sent twice.
        """
        policy = request.policy
        if request.channel is not Channel.EMAIL:
            raise ApplicationError(
                f"{policy.name}: contact {request.contact_id} is a {request.channel.value} "
                "contact; only email is ever sent to an agent's own mailbox",
                type="NotDeliverable",
                non_retryable=True,
            )
        resent_id = ids.resent_message_id(
            policy.name, request.ref.key, request.agent_id, policy.return_address
        )
        try:
            account = self._settings.account(policy.name)
            async with (
                _one_try_at_a_time(resent_id),
                smtp_connection(account) as smtp,
                self._pool.lease(policy.name) as session,
            ):
                found = await asyncio.to_thread(_find_for_delivery, session, request)
                if found is None:
                    return DeliverResult(resent_message_id=resent_id, already_delivered=True)
                where, original = found
                raw = build_resent(
                    original,
                    resent_from=policy.return_address,
                    resent_to=request.agent_email,
                    resent_message_id=resent_id,
                    contact_id=request.contact_id,
                    date=datetime.now(UTC),
                )
                _still_in_time(account)
                await send(
                    smtp,
                    account,
                    sender=policy.return_address,
                    recipient=request.agent_email,
                    raw=raw,
                )
                archived = await asyncio.to_thread(move, session, where, policy.archive_folder)
        except (ImapError, ConfigError, OSError, EOFError) as exc:
            raise as_activity_error(exc) from None
        return DeliverResult(resent_message_id=resent_id, archived=archived)

    @activity.defn
    async def send_reply(self, request: SendReplyRequest) -> ReplyResult:
        """Send a reply written in the built-in interface: from the outbox to the customer,
        then into the Sent folder, which is the record (checked first, so a retry never sends
        it twice)."""
        policy = request.policy
        try:
            account = self._settings.account(policy.name)
            async with (
                _one_try_at_a_time(request.message_id),
                smtp_connection(account) as smtp,
                self._pool.lease(policy.name) as session,
            ):
                if await asyncio.to_thread(
                    _in_folder, session, policy.sent_folder, request.message_id
                ):
                    return ReplyResult(message_id=request.message_id, sent=False)
                draft = await asyncio.to_thread(_draft, session, policy.outbox_folder, request)
                _still_in_time(account)
                await send(
                    smtp, account, sender=policy.return_address, recipient=request.to, raw=draft[1]
                )
                await asyncio.to_thread(session.move, draft[0], policy.sent_folder)
        except (ImapError, ConfigError, OSError, EOFError) as exc:
            raise as_activity_error(exc) from None
        return ReplyResult(message_id=request.message_id, sent=True)


_send_locks: dict[str, asyncio.Lock] = {}
_send_tries: Counter[str] = Counter()


@asynccontextmanager
async def _one_try_at_a_time(message_id: str) -> AsyncIterator[None]:
    """Tries of one send take turns in this worker. A try past its time limit keeps running
    (nothing cancels it without heartbeats) while the server starts the next one; in turns,
    the later try finds the earlier one's record instead of sending too."""
    lock = _send_locks.setdefault(message_id, asyncio.Lock())
    _send_tries[message_id] += 1
    try:
        async with lock:
            yield
    finally:
        _send_tries[message_id] -= 1
        if not _send_tries[message_id]:
            del _send_tries[message_id], _send_locks[message_id]


def _still_in_time(account: AccountSettings) -> None:
    """Refuse to start a send this try cannot finish within its time limit: past it, the
    server has given the work to a new try, possibly on another worker."""
    info = activity.info()
    if info.start_to_close_timeout is None:
        return
    deadline = info.started_time + info.start_to_close_timeout
    if datetime.now(UTC) + timedelta(seconds=account.smtp.timeout_seconds) > deadline:
        raise ApplicationError(
            f"{account.name}: too little of this try's time is left to send; a new try will",
            type="TryExpired",
        )


def _in_folder(session: ImapSession, folder: str, message_id: str) -> bool:
    quoted = quote_string(message_id)
    session.select(folder)
    return bool(quoted and session.search(f"HEADER Message-ID {quoted}"))


def _draft(session: ImapSession, folder: str, request: SendReplyRequest) -> tuple[int, bytes]:
    """The reply waiting in the outbox (its folder selected), by its Message-ID."""
    quoted = quote_string(request.message_id)
    session.select(folder, refresh=True)
    for uid in session.search(f"HEADER Message-ID {quoted}") if quoted else []:
        fetched = session.fetch_one(uid)
        if fetched is not None and fetched.raw:
            return uid, fetched.raw
    raise ApplicationError(
        f"{request.policy.name}: the reply {request.message_id} of contact {request.contact_id} "
        f"is in neither {folder!r} nor the Sent folder",
        type="MessageMissing",
        non_retryable=True,
    )


def _find_for_delivery(
    session: ImapSession, request: DeliverRequest
) -> tuple[MessageRef, bytes] | None:
    """The message in processing with its bytes; None if it is already archived (delivered)."""
    policy = request.policy
    found = locate(session, request.ref, [request.ref.folder, policy.processing_folder])
    if found is not None:
        session.select(found[0].folder)
        return found
    if locate(session, request.ref, [policy.archive_folder]) is not None:
        return None
    raise ApplicationError(
        f"{policy.name}: message {request.ref.uid} of contact {request.contact_id} "
        "is in neither the processing nor the archive folder",
        type="MessageMissing",
        non_retryable=True,
    )


@asynccontextmanager
async def smtp_connection(
    account: AccountSettings, tokens: TokenProvider = TOKENS
) -> AsyncIterator[aiosmtplib.SMTP]:
    """A connected, logged-in SMTP client; connection faults become typed activity errors.

    STARTTLS is required when configured: a server that does not offer it gets no login.
    TLS faults (certificate, handshake, STARTTLS missing) are retried: they are fixed on the
    server or in the configuration, and the contact should then carry on.
    """
    smtp = account.smtp
    where = f"{account.name}: SMTP {smtp.host}:{smtp.port}"
    if (
        (smtp.security is Security.NONE or not smtp.tls_verify)
        and smtp.logs_in
        and not is_loopback(smtp.host)
        and not smtp.allow_plaintext
    ):
        raise ApplicationError(
            f"{account.name}: smtp.security is '{smtp.security.value}' with tls_verify = "
            f"{str(smtp.tls_verify).lower()} for non-loopback host {smtp.host} with a login; "
            "set smtp.allow_plaintext = true to expose the credentials anyway",
            type="ConfigError",
            non_retryable=True,
        )
    if not smtp.tls_verify and smtp.security is not Security.NONE:
        log.warning("%s: TLS certificate not verified (smtp.tls_verify = false)", where)
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.security is Security.SSL,
        start_tls=False,
        tls_context=smtp.tls_context() if smtp.security is not Security.NONE else None,
        timeout=smtp.timeout_seconds,
    )
    try:
        await client.connect()
        if smtp.security is Security.STARTTLS:
            await client.ehlo()
            if not client.supports_extension("starttls"):
                raise ApplicationError(
                    f"{where} does not offer STARTTLS, which smtp.security = 'starttls' "
                    "requires; nothing was sent (no fallback to plaintext). If the port speaks "
                    "TLS from the start, set smtp.security = 'ssl'",
                    type="SmtpTlsError",
                )
            await client.starttls()
        if smtp.auth is AuthMethod.XOAUTH2 and smtp.oauth2 is not None:
            await _xoauth2_login(client, account, smtp.oauth2, tokens)
        elif smtp.username:
            await client.login(smtp.username, smtp.secret() or "")
    except BaseException as exc:
        client.close()
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            raise _smtp_error(account, exc.code, exc.message) from None
        if isinstance(exc, aiosmtplib.SMTPException | OSError):
            if described := tls_failure(where, exc):
                raise ApplicationError(described, type="SmtpTlsError") from None
            raise ApplicationError(f"{where}: {exc}", type="SmtpUnavailable") from None
        raise
    try:
        yield client
    finally:
        with suppress(Exception):
            await client.quit()


async def _xoauth2_login(
    client: aiosmtplib.SMTP,
    account: AccountSettings,
    oauth2: OAuth2Settings,
    tokens: TokenProvider,
) -> None:
    """AUTH XOAUTH2; a refused token is replaced by a fresh one once."""
    smtp = account.smtp
    owner = f"{account.name}: smtp"
    await client.ehlo()
    if "xoauth2" not in client.server_auth_methods:
        raise ApplicationError(
            f"{account.name}: SMTP {smtp.host}:{smtp.port} does not offer AUTH XOAUTH2, which "
            "smtp.auth = 'xoauth2' requires",
            type="ConfigError",
            non_retryable=True,
        )
    for attempt in (1, 2):
        try:
            token = await asyncio.to_thread(
                tokens.token, owner, oauth2, timeout=smtp.timeout_seconds
            )
        except OAuth2Error as exc:
            message = str(exc).replace("oauth2.", "smtp.oauth2.", 1)
            if exc.permanent:
                raise ApplicationError(message, type="ConfigError", non_retryable=True) from None
            raise ApplicationError(message, type="OAuth2Unavailable") from None
        try:
            await client.auth_xoauth2(smtp.username or "", token)
            return
        except aiosmtplib.SMTPAuthenticationError as exc:
            tokens.invalidate(owner, oauth2, token)
            if attempt == 2:
                raise _smtp_error(
                    account,
                    exc.code,
                    f"XOAUTH2 login as {smtp.username!r} was refused with a freshly issued "
                    f"token ({exc.message}); check that the app may send for this mailbox",
                ) from None


def _original_text(session: ImapSession, request: AutoReplyRequest) -> str | None:
    """The customer's text, for a template that quotes it; None if the message is gone."""
    policy = request.policy
    folders = [request.ref.folder, policy.processing_folder, policy.archive_folder]
    found = locate(session, request.ref, folders)
    return mime.body_text(found[1]) if found else None


async def send(
    client: aiosmtplib.SMTP, account: AccountSettings, *, sender: str, recipient: str, raw: bytes
) -> None:
    """One message; 5xx answers are permanent (non-retryable), everything else transient."""
    options = (
        ["BODY=8BITMIME"] if not raw.isascii() and client.supports_extension("8bitmime") else []
    )
    try:
        if not (sender.isascii() and recipient.isascii()):
            options.append(await _smtputf8(client, account, sender, recipient))
        await client.sendmail(sender, [recipient], raw, mail_options=options)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        raise _smtp_error(
            account, exc.recipients[0].code if exc.recipients else 550, str(exc)
        ) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise _smtp_error(account, exc.code, exc.message) from None
    except aiosmtplib.SMTPException as exc:
        raise ApplicationError(
            f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port}: {exc}",
            type="SmtpUnavailable",
        ) from None
    except UnicodeError as exc:
        raise ApplicationError(
            f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port}: "
            f"the envelope cannot be encoded: {exc}",
            type="SmtpRejected",
            non_retryable=True,
        ) from None


async def _smtputf8(
    client: aiosmtplib.SMTP, account: AccountSettings, sender: str, recipient: str
) -> str:
    """The SMTPUTF8 option (RFC 6531) an international address needs; a final refusal if the
    server does not offer it."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    if not client.supports_extension("smtputf8"):
        raise ApplicationError(
            f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port}: the address "
            f"{recipient if not recipient.isascii() else sender} needs SMTPUTF8 (RFC 6531), "
            "which the server does not offer",
            type="SmtpRejected",
            non_retryable=True,
        )
    return "SMTPUTF8"


def _smtp_error(account: AccountSettings, code: int, text: str) -> ApplicationError:
    permanent = 500 <= code < 600
    return ApplicationError(
        f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port} answered {code}: {text}",
        type="SmtpRejected" if permanent else "SmtpDeferred",
        non_retryable=permanent,
    )

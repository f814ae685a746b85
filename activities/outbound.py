"""SMTP activities: the automatic reply and delivery to an agent's own address.

They are async (aiosmtplib); the IMAP bookkeeping around each send (the Sent folder and the
archive folder are the records of what left) runs on a thread, on the pooled sessions.
Each send has a deterministic Message-ID, so a retry first looks for its own record.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ace_email import ids, mime
from ace_email.auto_reply import ReplyParts, compose_auto_reply
from ace_email.compose import build_resent
from ace_email.models import (
    AutoReplyRequest,
    AutoReplyResult,
    DeliverRequest,
    DeliverResult,
    MessageRef,
)
from ace_email.settings import AccountSettings, ConfigError, Security, Settings
from ace_email.templates import template_named
from activities.imap_session import ImapError, ImapPool, ImapSession, is_loopback, quote_string
from activities.mailbox import as_activity_error, locate, move


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
            async with smtp_connection(account) as smtp, self._pool.lease(policy.name) as session:
                if await asyncio.to_thread(_in_folder, session, policy.sent_folder, message_id):
                    return AutoReplyResult(message_id=message_id, sent=False)
                original = None
                if template.quote != "none":
                    original = await asyncio.to_thread(_original_text, session, request)
                raw = compose_auto_reply(
                    account,
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
        resent_id = ids.resent_message_id(
            policy.name, request.ref.key, request.agent_id, policy.return_address
        )
        try:
            account = self._settings.account(policy.name)
            async with smtp_connection(account) as smtp, self._pool.lease(policy.name) as session:
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


def _in_folder(session: ImapSession, folder: str, message_id: str) -> bool:
    quoted = quote_string(message_id)
    session.select(folder)
    return bool(quoted and session.search(f"HEADER Message-ID {quoted}"))


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
async def smtp_connection(account: AccountSettings) -> AsyncIterator[aiosmtplib.SMTP]:
    """A connected, logged-in SMTP client; connection faults become typed activity errors."""
    smtp = account.smtp
    if (
        smtp.security is Security.NONE
        and smtp.username
        and not is_loopback(smtp.host)
        and not smtp.allow_plaintext
    ):
        raise ApplicationError(
            f"{account.name}: smtp.security is 'none' for non-loopback host {smtp.host} with a "
            "login; set smtp.allow_plaintext = true to send the password unencrypted anyway",
            type="ConfigError",
            non_retryable=True,
        )
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.security is Security.SSL,
        start_tls=smtp.security is Security.STARTTLS,
        tls_context=ssl.create_default_context(),
        timeout=smtp.timeout_seconds,
    )
    try:
        await client.connect()
        if smtp.username:
            await client.login(smtp.username, smtp.secret() or "")
    except aiosmtplib.SMTPResponseException as exc:
        raise _smtp_error(account, exc.code, exc.message) from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise ApplicationError(
            f"{account.name}: SMTP {smtp.host}:{smtp.port}: {exc}", type="SmtpUnavailable"
        ) from None
    try:
        yield client
    finally:
        with suppress(Exception):
            await client.quit()


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

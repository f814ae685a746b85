"""Sending over SMTP: a connected, logged-in client (TLS, STARTTLS required where configured,
XOAUTH2), and one message sent with the options its addresses and bytes need. Faults are
MailErrors: a 5xx answer is permanent, everything else may pass on a later try.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiosmtplib

from ace_email.config.accounts import AccountSettings
from ace_email.config.base import is_loopback
from ace_email.config.mail_servers import AuthMethod, Security
from ace_email.config.oauth2 import OAuth2Settings
from ace_email.mail.errors import MailError, smtp_answer, tls_failure
from ace_email.mail.oauth2 import TOKENS, OAuth2Error, TokenProvider

log = logging.getLogger(__name__)


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
        raise MailError(
            f"{account.name}: smtp.security is '{smtp.security.value}' with tls_verify = "
            f"{str(smtp.tls_verify).lower()} for non-loopback host {smtp.host} with a login; "
            "set smtp.allow_plaintext = true to expose the credentials anyway",
            kind="ConfigError",
            permanent=True,
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
                raise MailError(
                    f"{where} does not offer STARTTLS, which smtp.security = 'starttls' "
                    "requires; nothing was sent (no fallback to plaintext). If the port speaks "
                    "TLS from the start, set smtp.security = 'ssl'",
                    kind="SmtpTlsError",
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
                raise MailError(described, kind="SmtpTlsError") from None
            raise MailError(f"{where}: {exc}", kind="SmtpUnavailable") from None
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
        raise MailError(
            f"{account.name}: SMTP {smtp.host}:{smtp.port} does not offer AUTH XOAUTH2, which "
            "smtp.auth = 'xoauth2' requires",
            kind="ConfigError",
            permanent=True,
        )
    for attempt in (1, 2):
        try:
            token = await asyncio.to_thread(
                tokens.token, owner, oauth2, timeout=smtp.timeout_seconds
            )
        except OAuth2Error as exc:
            message = str(exc).replace("oauth2.", "smtp.oauth2.", 1)
            if exc.permanent:
                raise MailError(message, kind="ConfigError", permanent=True) from None
            raise MailError(message, kind="OAuth2Unavailable") from None
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
        raise MailError(
            f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port}: {exc}",
            kind="SmtpUnavailable",
        ) from None
    except UnicodeError as exc:
        raise MailError(
            f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port}: "
            f"the envelope cannot be encoded: {exc}",
            kind="SmtpRejected",
            permanent=True,
        ) from None


async def _smtputf8(
    client: aiosmtplib.SMTP, account: AccountSettings, sender: str, recipient: str
) -> str:
    """The SMTPUTF8 option (RFC 6531) an international address needs; a final refusal if the
    server does not offer it."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    if not client.supports_extension("smtputf8"):
        raise MailError(
            f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port}: the address "
            f"{recipient if not recipient.isascii() else sender} needs SMTPUTF8 (RFC 6531), "
            "which the server does not offer",
            kind="SmtpRejected",
            permanent=True,
        )
    return "SMTPUTF8"


def _smtp_error(account: AccountSettings, code: int, text: str) -> MailError:
    return smtp_answer(f"{account.name}: SMTP {account.smtp.host}:{account.smtp.port}", code, text)

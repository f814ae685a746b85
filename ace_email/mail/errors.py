"""Faults of mail servers, their connections and their configuration, each described for the
person who fixes it: `kind` names the fault (the type retry policies know it by), `permanent`
says whether trying again can help."""

from __future__ import annotations

import ssl


class MailError(Exception):
    """A fault met talking to a mail server, described for the person who fixes it."""

    kind = "MailError"

    def __init__(self, message: str, *, kind: str | None = None, permanent: bool = False) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.permanent = permanent


class ImapError(MailError):
    """The IMAP server refused a command; `transient` says whether trying again may help."""

    kind = "ImapError"

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message, permanent=not transient)
        self.transient = transient


class ImapLoginError(ImapError):
    """The IMAP server refused the login. Retried, slowly: fixed, the mailbox recovers."""

    kind = "ImapLoginFailed"


class ImapTlsError(ImapError):
    """TLS could not be set up as configured; nothing was sent. Retried: the fix (a renewed
    certificate, STARTTLS switched back on, a corrected config) needs no change to contacts."""


def tls_failure(what: str, exc: BaseException) -> str | None:
    """A precise description of a TLS fault in `exc` or its causes, None if it is none."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (
                f"{what}: TLS certificate verification failed: {seen.verify_message}; trust "
                "the CA that signed the server's certificate with ca_file, or fix the certificate"
            )
        if isinstance(seen, ssl.SSLError):
            return f"{what}: TLS handshake failed: {seen.reason or seen}"
        seen = seen.__cause__ or seen.__context__
    return None


def smtp_answer(where: str, code: int, text: str) -> MailError:
    """An SMTP server's refusal: a 5xx answer is permanent, anything else may pass later."""
    permanent = 500 <= code < 600
    return MailError(
        f"{where} answered {code}: {text}",
        kind="SmtpRejected" if permanent else "SmtpDeferred",
        permanent=permanent,
    )

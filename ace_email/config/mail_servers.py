"""How a worker reaches an account's IMAP and SMTP servers: host, port, TLS, and the login (a
password from one source, or OAuth2)."""

from __future__ import annotations

import ssl
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import (
    Field,
    SecretStr,
    model_validator,
)

from ace_email.config.base import ReadableFile, Section, is_loopback
from ace_email.config.oauth2 import OAuth2Settings
from ace_email.config.secrets import read_secret, sources_given


class Security(StrEnum):
    SSL = "ssl"
    STARTTLS = "starttls"
    NONE = "none"


class AuthMethod(StrEnum):
    PASSWORD = "password"
    XOAUTH2 = "xoauth2"


class Credentials(Section):
    """A username and how it logs in (one source of its password, or OAuth2), and TLS."""

    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: ReadableFile | None = None
    auth: AuthMethod = AuthMethod.PASSWORD
    oauth2: OAuth2Settings | None = None
    ca_file: Path | None = Field(
        default=None, description="PEM bundle of CAs trusted besides the system's"
    )
    tls_verify: bool = Field(
        default=True,
        description="false: accept any certificate (loopback, or with allow_plaintext)",
    )
    allow_plaintext: bool = Field(
        default=False,
        description="allow a login over security = none or tls_verify = false towards a host "
        "that is not loopback",
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        sources = sources_given(self, "password")
        if self.auth is AuthMethod.XOAUTH2:
            if sources:
                raise ValueError(f"auth = xoauth2 takes no password, but {sources[0]} is set")
            if self.oauth2 is None:
                raise ValueError("auth = xoauth2 needs an oauth2 table")
            if not self.username:
                raise ValueError("auth = xoauth2 needs username (the mailbox to log in to)")
        elif self.oauth2 is not None:
            raise ValueError('oauth2 is only used with auth = "xoauth2"')
        if self.ca_file is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ValueError(f"ca_file: cannot load {self.ca_file}: {reason}") from None
        return self

    @property
    def logs_in(self) -> bool:
        return bool(self.username)

    def _transport_problem(self, host: str, security: Security) -> str | None:
        """Why logging in to `host` this way would expose the credentials, if it would."""
        if not self.logs_in or self.allow_plaintext or is_loopback(host):
            return None
        if security is Security.NONE:
            return (
                f"security = 'none' towards {host} would send the credentials unencrypted; "
                "use ssl or starttls, or set allow_plaintext = true"
            )
        if not self.tls_verify:
            return (
                f"tls_verify = false towards {host} would give the credentials to anyone in "
                "the path; trust a private CA with ca_file, or set allow_plaintext = true"
            )
        return None

    def tls_context(self) -> ssl.SSLContext:
        """The system's trust store plus `ca_file`; hostname and certificate checked unless
        `tls_verify = false`."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=self.ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def secret(self) -> str | None:
        """The password, read now from wherever the config says it lives."""
        return read_secret(self, "password")


class ImapSettings(Credentials):
    host: str
    port: int = Field(default=993, ge=1, le=65535)
    security: Security = Security.SSL
    folder: str = "INBOX"
    poll_interval_seconds: float = Field(default=30.0, gt=0, le=86400)
    processing_folder: str = "Processing"
    archive_folder: str = "Archive"
    quarantine_folder: str = "Quarantine"
    sent_folder: str = "Sent"
    workitem_folder: str = Field(
        default="WorkItems", description="the documents of work items and social contacts"
    )
    outbox_folder: str = Field(
        default="Outbox", description="replies written in the built-in interface, until sent"
    )
    timeout_seconds: float = Field(default=30.0, gt=0)
    sessions_per_worker: int = Field(default=4, ge=1, le=32)
    idle: bool = Field(
        default=True,
        description="push: IMAP IDLE on the inbox where the server offers it, so a new email "
        "is polled within milliseconds; poll_interval_seconds stays the safety net",
    )

    @model_validator(mode="after")
    def _needs_login(self) -> Self:
        if not self.username:
            raise ValueError("username is required for IMAP")
        if (
            self.auth is AuthMethod.PASSWORD
            and self.password is None
            and self.password_env is None
            and self.password_file is None
        ):
            raise ValueError("one of password, password_env, password_file is required for IMAP")
        if problem := self._transport_problem(self.host, self.security):
            raise ValueError(problem)
        return self


class SmtpSettings(Credentials):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Security = Security.STARTTLS
    timeout_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _safe_login(self) -> Self:
        if problem := self._transport_problem(self.host, self.security):
            raise ValueError(problem)
        return self

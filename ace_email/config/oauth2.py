"""OAuth2 for IMAP and SMTP (XOAUTH2): the provider, the grant, the client and where its
secrets are; and the loopback test the transport rules share."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ace_email.config.base import ReadableFile, is_loopback
from ace_email.config.secrets import read_secret, sources_given

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_USER_SCOPE = (
    "https://outlook.office.com/IMAP.AccessAsUser.All "
    "https://outlook.office.com/SMTP.Send offline_access"
)
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"


class Grant(StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    REFRESH_TOKEN = "refresh_token"


class Provider(StrEnum):
    MICROSOFT = "microsoft"
    GOOGLE = "google"


class OAuth2Settings(BaseModel):
    """Where and how to get access tokens. `provider` fills in `token_url` and `scope`."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider | None = None
    tenant: str | None = Field(default=None, description="Microsoft 365 tenant id or domain")
    token_url: str | None = None
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    client_secret_file: ReadableFile | None = None
    grant: Grant = Grant.CLIENT_CREDENTIALS
    refresh_token: SecretStr | None = None
    refresh_token_env: str | None = None
    refresh_token_file: ReadableFile | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        sources_given(self, "client_secret")
        has_refresh = bool(sources_given(self, "refresh_token"))
        if self.grant is Grant.REFRESH_TOKEN and not has_refresh:
            raise ValueError(
                "grant = refresh_token needs one of refresh_token, refresh_token_env, "
                "refresh_token_file"
            )
        if self.grant is Grant.CLIENT_CREDENTIALS and has_refresh:
            raise ValueError("a refresh token is only used with grant = refresh_token")
        if self.provider is Provider.MICROSOFT and self.token_url is None:
            if not self.tenant:
                raise ValueError('provider = "microsoft" needs tenant (or token_url)')
            self.token_url = MICROSOFT_TOKEN_URL.format(tenant=urllib.parse.quote(self.tenant))
        if self.provider is Provider.GOOGLE and self.token_url is None:
            self.token_url = GOOGLE_TOKEN_URL
        if self.scope is None:
            self.scope = _default_scope(self.provider, self.grant)
        if self.token_url is None:
            raise ValueError("token_url is required (or provider = microsoft | google)")
        url = urllib.parse.urlsplit(self.token_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"token_url {self.token_url!r} is not an http(s) URL")
        if url.scheme == "http" and not is_loopback(url.hostname):
            raise ValueError(
                f"token_url {self.token_url!r} would send the client secret unencrypted; use https"
            )
        return self

    def secret(self, name: str) -> str | None:
        """`client_secret` or `refresh_token`, read now from wherever the config says."""
        return read_secret(self, name, "oauth2.")


def _default_scope(provider: Provider | None, grant: Grant) -> str | None:
    if provider is Provider.MICROSOFT:
        return MICROSOFT_APP_SCOPE if grant is Grant.CLIENT_CREDENTIALS else MICROSOFT_USER_SCOPE
    if provider is Provider.GOOGLE:
        return GOOGLE_SCOPE
    return None

"""OAuth2 access tokens for XOAUTH2 logins to IMAP and SMTP.

`OAuth2Settings` is the `oauth2` table of an `[accounts.imap]` or `[accounts.smtp]` section.
`TokenProvider` fetches access tokens from the token endpoint (client credentials or refresh
token grant), keeps them in this worker process and fetches a new one before the old one
expires. Tokens and secrets are never logged and never leave the worker.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ace_email.config_types import ReadableFile

log = logging.getLogger(__name__)

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_USER_SCOPE = (
    "https://outlook.office.com/IMAP.AccessAsUser.All "
    "https://outlook.office.com/SMTP.Send offline_access"
)
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"

REFRESH_MARGIN_SECONDS = 60.0
REFRESH_MARGIN_SHARE = 0.2
DEFAULT_EXPIRES_IN = 3600.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        _at_most_one(self, "client_secret")
        _at_most_one(self, "refresh_token")
        has_refresh = any(
            getattr(self, f"refresh_token{s}") is not None for s in ("", "_env", "_file")
        )
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
        value: SecretStr | None = getattr(self, name)
        env: str | None = getattr(self, f"{name}_env")
        path: Path | None = getattr(self, f"{name}_file")
        if value is not None:
            return value.get_secret_value()
        if env is not None:
            found = os.environ.get(env)
            if found is None:
                raise OAuth2Error(
                    f"oauth2.{name}_env: environment variable {env} is not set", permanent=True
                )
            return found
        if path is not None:
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise OAuth2Error(
                    f"oauth2.{name}_file: cannot read {path}: {exc.strerror}", permanent=True
                ) from None
        return None


def _at_most_one(settings: OAuth2Settings, name: str) -> None:
    given = [f for f in (name, f"{name}_env", f"{name}_file") if getattr(settings, f) is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of {name}, {name}_env, {name}_file, not {given}")


def _default_scope(provider: Provider | None, grant: Grant) -> str | None:
    if provider is Provider.MICROSOFT:
        return MICROSOFT_APP_SCOPE if grant is Grant.CLIENT_CREDENTIALS else MICROSOFT_USER_SCOPE
    if provider is Provider.GOOGLE:
        return GOOGLE_SCOPE
    return None


class OAuth2Error(Exception):
    """No access token. `permanent`: the configuration must change (a refused client, a
    revoked grant); otherwise the token endpoint may answer later."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class _Token:
    value: str
    refresh_at: float
    expires_at: float


@dataclass
class _Entry:
    lock: threading.Lock
    token: _Token | None = None
    rotated_refresh_token: str | None = None


Post = Callable[[str, dict[str, str], float], tuple[int, bytes]]


def _post(url: str, form: dict[str, str], timeout: float) -> tuple[int, bytes]:
    """POST a form; the status and body of any HTTP answer, OSError when there is none."""
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, bytes(exc.read())


class TokenProvider:
    """Access tokens per account and section, shared by the threads of one worker.

    A token is fetched again once `REFRESH_MARGIN_SHARE` of its lifetime (at most
    `REFRESH_MARGIN_SECONDS`) is left, and at once after `invalidate` (the server refused it).
    Callers of one account wait for a single request to the token endpoint.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, post: Post = _post) -> None:
        self._clock = clock
        self._post = post
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, ...], _Entry] = {}

    def _entry(self, key: tuple[str, ...]) -> _Entry:
        with self._lock:
            return self._entries.setdefault(key, _Entry(threading.Lock()))

    def token(self, where: str, settings: OAuth2Settings, *, timeout: float = 30.0) -> str:
        """A valid access token for `where` (e.g. "support: imap"), fetched only when needed."""
        entry = self._entry(_key(where, settings))
        with entry.lock:
            token = entry.token
            if token is not None and self._clock() < token.refresh_at:
                return token.value
            try:
                fresh = self._fetch(where, settings, entry, timeout)
            except OAuth2Error as exc:
                if not exc.permanent and token is not None and self._clock() < token.expires_at:
                    return token.value
                raise
            entry.token = fresh
            return fresh.value

    def invalidate(self, where: str, settings: OAuth2Settings, value: str) -> None:
        """Forget `value` (the server refused it); the next `token` call fetches a new one."""
        entry = self._entry(_key(where, settings))
        with entry.lock:
            if entry.token is not None and entry.token.value == value:
                entry.token = None

    def _fetch(self, where: str, settings: OAuth2Settings, entry: _Entry, timeout: float) -> _Token:
        form = {"grant_type": settings.grant.value, "client_id": settings.client_id}
        try:
            secret = settings.secret("client_secret")
            refresh = entry.rotated_refresh_token or settings.secret("refresh_token")
        except OAuth2Error as exc:
            raise OAuth2Error(f"{where}: {exc}", permanent=True) from None
        if secret is not None:
            form["client_secret"] = secret
        if settings.scope:
            form["scope"] = settings.scope
        if settings.grant is Grant.REFRESH_TOKEN:
            form["refresh_token"] = refresh or ""
        url = settings.token_url or ""
        started = self._clock()
        try:
            status, body = self._post(url, form, timeout)
        except (OSError, ValueError) as exc:
            raise OAuth2Error(
                f"{where}: token endpoint {url} unreachable: {_reason(exc)}", permanent=False
            ) from None
        answer = _json(body)
        if status != 200:
            if answer.get("error") == "invalid_grant":
                entry.rotated_refresh_token = None
            raise _refusal(where, settings, url, status, answer)
        value = answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise OAuth2Error(
                f"{where}: oauth2.token_url: {url} answered without an access_token "
                "(is it the token endpoint?)",
                permanent=True,
            )
        expires_in = _seconds(answer.get("expires_in"))
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            entry.rotated_refresh_token = rotated
        margin = min(REFRESH_MARGIN_SECONDS, expires_in * REFRESH_MARGIN_SHARE)
        log.info("%s: new OAuth2 access token, valid for %.0f s", where, expires_in)
        return _Token(value, started + expires_in - margin, started + expires_in)


def _key(where: str, settings: OAuth2Settings) -> tuple[str, ...]:
    """Sections of one account with the same token request share one token."""
    account = where.split(":", 1)[0]
    refresh = (
        settings.refresh_token_env or str(settings.refresh_token_file or "")
        if settings.refresh_token is None
        else "inline"
    )
    return (
        account,
        settings.token_url or "",
        settings.client_id,
        settings.grant.value,
        settings.scope or "",
        refresh,
    )


def _json(body: bytes) -> dict[str, object]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(value: object) -> float:
    try:
        seconds = float(value) if isinstance(value, int | float | str) else DEFAULT_EXPIRES_IN
    except ValueError:
        return DEFAULT_EXPIRES_IN
    return seconds if seconds > 0 else DEFAULT_EXPIRES_IN


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


_FIELD_OF_ERROR = {
    "invalid_client": "client_id/client_secret",
    "unauthorized_client": "client_id/grant",
    "invalid_scope": "scope",
    "unsupported_grant_type": "grant",
}


def _refusal(
    where: str, settings: OAuth2Settings, url: str, status: int, answer: dict[str, object]
) -> OAuth2Error:
    code = answer.get("error")
    described = answer.get("error_description")
    detail = f"{code}" if isinstance(code, str) else f"HTTP {status}"
    if isinstance(described, str) and described:
        detail += f": {described.splitlines()[0][:200]}"
    if status == 429 or status >= 500:
        return OAuth2Error(
            f"{where}: token endpoint {url} is unavailable ({detail})", permanent=False
        )
    if code == "invalid_grant":
        field = "refresh_token" if settings.grant is Grant.REFRESH_TOKEN else "grant"
    elif isinstance(code, str) and code in _FIELD_OF_ERROR:
        field = _FIELD_OF_ERROR[code]
    else:
        field = "token_url"
    return OAuth2Error(
        f"{where}: oauth2.{field}: the token endpoint refused the request ({detail})",
        permanent=True,
    )


TOKENS = TokenProvider()
"""The worker process's token cache."""

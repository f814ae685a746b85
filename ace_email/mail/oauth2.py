"""OAuth2 access tokens for XOAUTH2 logins: fetched from the provider's token endpoint, kept
until shortly before they expire, shared by every session of a worker, and replaced when a
server refuses one. Refusals are described by the field to fix; secrets never appear."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from ace_email.config.base import ConfigError
from ace_email.config.oauth2 import Grant, OAuth2Settings

log = logging.getLogger(__name__)

REFRESH_MARGIN_SECONDS = 60.0
REFRESH_MARGIN_SHARE = 0.2
DEFAULT_EXPIRES_IN = 3600.0


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
        except ConfigError as exc:
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

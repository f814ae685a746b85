"""OAuth2 (XOAUTH2) logins to IMAP and SMTP, with tokens from a real token endpoint on loopback
and servers that check the tokens it issued."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.client import Client

from ace_email.config.accounts import AccountSettings
from ace_email.config.oauth2 import OAuth2Settings
from ace_email.config.settings import Settings
from ace_email.mail.errors import ImapError, ImapLoginError, MailError
from ace_email.mail.imap import connect
from ace_email.mail.oauth2 import OAuth2Error, TokenProvider
from ace_email.mail.smtp import smtp_connection
from ace_email.operations.registry import sync
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from tests.conftest import Pipeline
from tests.support import (
    AGENT_EMAIL,
    CUSTOMER,
    PASSWORD,
    MailStack,
    account_settings,
    eventually,
    free_port,
    make_message,
)

CLIENT_ID = "ace-email-app"
CLIENT_SECRET = "client-secret-value"
REFRESH_TOKEN = "refresh-token-1"


@dataclass
class TokenEndpoint:
    """Issues tokens for both grants; the mail servers accept exactly the live ones."""

    lifetime: float = 60.0
    issued: dict[str, float] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    refresh_tokens: set[str] = field(default_factory=lambda: {REFRESH_TOKEN})
    rotate: bool = False
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/v2.0/token"

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        with self.lock:
            self.requests.append(form)
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return 401, {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                }
            grant = form.get("grant_type")
            answer: dict[str, object] = {}
            if grant == "refresh_token":
                if form.get("refresh_token") not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant", "error_description": "token revoked"}
                if self.rotate:
                    rotated = f"refresh-{uuid.uuid4().hex}"
                    self.refresh_tokens = {rotated}
                    answer["refresh_token"] = rotated
            elif grant != "client_credentials":
                return 400, {"error": "unsupported_grant_type"}
            token = f"at-{uuid.uuid4().hex}"
            self.issued[token] = time.monotonic() + self.lifetime
            return 200, answer | {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.lifetime,
            }

    def check(self, user: str, token: str) -> bool:
        with self.lock:
            expiry = self.issued.get(token)
        return user == "support@example.com" and expiry is not None and expiry > time.monotonic()

    def revoke_all(self) -> None:
        with self.lock:
            self.issued.clear()


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    state = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            status, body = state.answer(form)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def mail(tmp_path: Path, endpoint: TokenEndpoint) -> AsyncIterator[MailStack]:
    """The local mail server, taking XOAUTH2 with the endpoint's live tokens."""
    imap_port, smtp_port = free_port(), free_port()
    support = "support@example.com"
    users = [MailUser(address, PASSWORD) for address in (support, CUSTOMER, AGENT_EMAIL)]
    server = LocalMailServer(
        tmp_path / "mail",
        users,
        imap_port=imap_port,
        smtp_port=smtp_port,
        xoauth2=endpoint.check,
    )
    async with MailServerThread(server):
        yield MailStack(server=server, imap_port=imap_port, smtp_port=smtp_port, support=support)


def oauth2_table(endpoint: TokenEndpoint, **changes: object) -> dict[str, object]:
    return {
        "token_url": endpoint.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "https://outlook.office365.com/.default",
    } | changes


def xoauth2_account(mail: MailStack, endpoint: TokenEndpoint, **changes: object) -> AccountSettings:
    table = oauth2_table(endpoint, **changes)
    login = {"username": mail.support, "auth": "xoauth2", "oauth2": table, "timeout_seconds": 5}
    return AccountSettings.model_validate(
        {
            "name": "m365",
            "address": mail.support,
            "imap": {"host": "127.0.0.1", "port": mail.imap_port, "security": "none"} | login,
            "smtp": {"host": "127.0.0.1", "port": mail.smtp_port, "security": "none"} | login,
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_reused_until_near_expiry_then_refreshed(endpoint: TokenEndpoint) -> None:
    endpoint.lifetime = 100.0
    clock = Clock()
    tokens = TokenProvider(clock=clock)
    settings = OAuth2Settings.model_validate(oauth2_table(endpoint))
    first = tokens.token("m365: imap", settings)
    clock.now += 79.0
    assert tokens.token("m365: smtp", settings) == first
    assert len(endpoint.requests) == 1
    clock.now += 2.0  # past 80 % of the lifetime (20 s margin: less than 60 s)
    second = tokens.token("m365: imap", settings)
    assert second != first and len(endpoint.requests) == 2
    assert endpoint.requests[0] == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": "https://outlook.office365.com/.default",
    }


def test_a_long_lived_token_is_refreshed_a_minute_before_it_expires(
    endpoint: TokenEndpoint,
) -> None:
    endpoint.lifetime = 3600.0
    clock = Clock()
    tokens = TokenProvider(clock=clock)
    settings = OAuth2Settings.model_validate(oauth2_table(endpoint))
    first = tokens.token("m365: imap", settings)
    clock.now += 3539.0
    assert tokens.token("m365: imap", settings) == first
    clock.now += 2.0
    assert tokens.token("m365: imap", settings) != first


def test_refresh_token_grant_keeps_the_rotated_refresh_token(endpoint: TokenEndpoint) -> None:
    endpoint.rotate = True
    endpoint.lifetime = 10.0
    clock = Clock()
    tokens = TokenProvider(clock=clock)
    settings = OAuth2Settings.model_validate(
        oauth2_table(endpoint, grant="refresh_token", refresh_token=REFRESH_TOKEN)
    )
    tokens.token("m365: imap", settings)
    clock.now += 9.0
    tokens.token("m365: imap", settings)
    assert [r["grant_type"] for r in endpoint.requests] == ["refresh_token"] * 2
    assert endpoint.requests[0]["refresh_token"] == REFRESH_TOKEN
    assert endpoint.requests[1]["refresh_token"].startswith("refresh-")


def test_concurrent_callers_share_one_request(endpoint: TokenEndpoint) -> None:
    tokens = TokenProvider()
    settings = OAuth2Settings.model_validate(oauth2_table(endpoint))
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(tokens.token("m365: imap", settings)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(endpoint.requests) == 1


def test_a_bad_client_secret_is_a_permanent_error_naming_account_and_field(
    endpoint: TokenEndpoint,
) -> None:
    settings = OAuth2Settings.model_validate(oauth2_table(endpoint, client_secret="wrong"))
    with pytest.raises(OAuth2Error) as error:
        TokenProvider().token("m365: imap", settings)
    assert error.value.permanent
    assert str(error.value) == (
        "m365: imap: oauth2.client_id/client_secret: the token endpoint refused the request "
        "(invalid_client: AADSTS7000215: Invalid client secret provided.)"
    )
    assert "wrong" not in str(error.value)


def test_a_revoked_refresh_token_names_the_refresh_token(endpoint: TokenEndpoint) -> None:
    settings = OAuth2Settings.model_validate(
        oauth2_table(endpoint, grant="refresh_token", refresh_token="revoked")
    )
    with pytest.raises(OAuth2Error, match=r"m365: imap: oauth2\.refresh_token: .*invalid_grant"):
        TokenProvider().token("m365: imap", settings)


def test_an_unreachable_endpoint_is_transient() -> None:
    settings = OAuth2Settings.model_validate(
        {
            "token_url": f"http://127.0.0.1:{free_port()}/token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
    )
    with pytest.raises(OAuth2Error, match=r"token endpoint .* unreachable") as error:
        TokenProvider().token("m365: imap", settings, timeout=2)
    assert not error.value.permanent


def test_presets_and_validation() -> None:
    microsoft = OAuth2Settings.model_validate(
        {"provider": "microsoft", "tenant": "contoso.onmicrosoft.com", "client_id": "x"}
    )
    assert microsoft.token_url == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert microsoft.scope == "https://outlook.office365.com/.default"
    google = OAuth2Settings.model_validate(
        {"provider": "google", "client_id": "x", "grant": "refresh_token", "refresh_token": "r"}
    )
    assert google.token_url == "https://oauth2.googleapis.com/token"
    assert google.scope == "https://mail.google.com/"
    with pytest.raises(ValueError, match="would send the client secret unencrypted"):
        OAuth2Settings.model_validate({"token_url": "http://idp.example/token", "client_id": "x"})
    with pytest.raises(ValueError, match="grant = refresh_token needs one of refresh_token"):
        OAuth2Settings.model_validate(
            {"token_url": "https://idp.example/token", "client_id": "x", "grant": "refresh_token"}
        )
    with pytest.raises(ValueError, match="auth = xoauth2 takes no password"):
        AccountSettings.model_validate(
            {
                "name": "a",
                "address": "a@example.com",
                "imap": {
                    "host": "imap.example.com",
                    "username": "a@example.com",
                    "password": "p",
                    "auth": "xoauth2",
                    "oauth2": {"provider": "google", "client_id": "x"},
                },
                "smtp": {"host": "smtp.example.com"},
            }
        )


async def test_imap_and_smtp_log_in_with_xoauth2_and_share_the_token(
    mail: MailStack, endpoint: TokenEndpoint
) -> None:
    account = xoauth2_account(mail, endpoint)
    tokens = TokenProvider()
    for _ in range(2):
        session = await asyncio.to_thread(connect, account, tokens)
        assert session.select("INBOX") > 0
        session.client.shutdown()
    async with smtp_connection(account, tokens) as client:
        await client.sendmail(mail.support, [CUSTOMER], make_message(subject="via XOAUTH2"))
    assert [m["Subject"] for m in await mail.messages(CUSTOMER)] == ["via XOAUTH2"]
    assert len(endpoint.requests) == 1


async def test_a_refused_token_is_refreshed_once_and_the_login_retried(
    mail: MailStack, endpoint: TokenEndpoint
) -> None:
    account = xoauth2_account(mail, endpoint)
    tokens = TokenProvider()
    (await asyncio.to_thread(connect, account, tokens)).client.shutdown()
    endpoint.revoke_all()
    (await asyncio.to_thread(connect, account, tokens)).client.shutdown()
    assert len(endpoint.requests) == 2
    endpoint.revoke_all()
    async with smtp_connection(account, tokens):
        pass
    assert len(endpoint.requests) == 3


async def test_an_expired_token_is_refreshed_before_use(
    mail: MailStack, endpoint: TokenEndpoint
) -> None:
    endpoint.lifetime = 1.0
    account = xoauth2_account(mail, endpoint)
    tokens = TokenProvider()
    (await asyncio.to_thread(connect, account, tokens)).client.shutdown()
    await asyncio.sleep(1.1)
    (await asyncio.to_thread(connect, account, tokens)).client.shutdown()
    assert len(endpoint.requests) == 2


async def test_a_server_refusing_fresh_tokens_gives_a_precise_error(
    tmp_path: Path, endpoint: TokenEndpoint
) -> None:
    imap_port, smtp_port = free_port(), free_port()
    server = LocalMailServer(
        tmp_path / "refusing",
        [MailUser("support@example.com", PASSWORD)],
        imap_port=imap_port,
        smtp_port=smtp_port,
        xoauth2=lambda user, token: False,
    )
    async with MailServerThread(server):
        stack = MailStack(server, imap_port, smtp_port, "support@example.com")
        account = xoauth2_account(stack, endpoint)
        tokens = TokenProvider()
        with pytest.raises(ImapLoginError) as imap_error:
            await asyncio.to_thread(connect, account, tokens)
        assert str(imap_error.value) == (
            f"m365: IMAP 127.0.0.1:{imap_port}: XOAUTH2 login as 'support@example.com' was "
            "refused with a freshly issued token; check that the app may use IMAP for this "
            "mailbox (permissions, scope)"
        )
        assert len(endpoint.requests) == 2
        with pytest.raises(MailError) as smtp_error:
            async with smtp_connection(account, tokens):
                pass
        assert smtp_error.value.kind == "SmtpRejected"
        assert "XOAUTH2 login as 'support@example.com' was refused" in str(smtp_error.value)
        assert len(endpoint.requests) == 4


async def test_a_bad_client_secret_is_reported_per_protocol(
    mail: MailStack, endpoint: TokenEndpoint
) -> None:
    account = xoauth2_account(mail, endpoint, client_secret="wrong")
    with pytest.raises(ImapLoginError) as imap_error:
        await asyncio.to_thread(connect, account, TokenProvider())
    assert str(imap_error.value).startswith(
        "m365: imap: imap.oauth2.client_id/client_secret: the token endpoint refused"
    )
    with pytest.raises(MailError) as smtp_error:
        async with smtp_connection(account, TokenProvider()):
            pass
    assert smtp_error.value.kind == "ConfigError" and smtp_error.value.permanent
    assert str(smtp_error.value).startswith(
        "m365: smtp: smtp.oauth2.client_id/client_secret: the token endpoint refused"
    )


async def test_an_unreachable_token_endpoint_is_retried(mail: MailStack) -> None:
    dead = TokenEndpoint(port=free_port())
    account = xoauth2_account(mail, dead)
    with pytest.raises(ImapError) as imap_error:
        await asyncio.to_thread(connect, account, TokenProvider())
    assert imap_error.value.transient and "unreachable" in str(imap_error.value)
    with pytest.raises(MailError) as smtp_error:
        async with smtp_connection(account, TokenProvider()):
            pass
    assert smtp_error.value.kind == "OAuth2Unavailable" and not smtp_error.value.permanent


@pytest.fixture
def settings(mail: MailStack, temporal_address: str, endpoint: TokenEndpoint) -> Settings:
    """The pipeline's account, logging in to IMAP and SMTP with XOAUTH2."""
    login = {
        "username": mail.support,
        "password": None,
        "auth": "xoauth2",
        "oauth2": oauth2_table(endpoint),
    }
    base = account_settings(
        name=f"m365-{uuid.uuid4().hex[:8]}",
        stack=mail,
        temporal_address=temporal_address,
        namespace="default",
        task_queue=f"ace-email-{uuid.uuid4().hex[:8]}",
    )
    raw = base.model_dump(mode="python")
    account = raw["accounts"][0]
    account["imap"] |= login
    account["smtp"] |= login
    return Settings.model_validate(raw)


async def test_the_pipeline_answers_an_email_over_xoauth2(
    pipeline: Pipeline, client: Client, endpoint: TokenEndpoint
) -> None:
    await sync(client, pipeline.settings)
    await pipeline.mail.send(make_message("Order 42 is late"))

    async def replied() -> list[str]:
        subjects = [m["Subject"] for m in await pipeline.mail.messages(CUSTOMER)]
        assert subjects, "no automatic reply yet"
        return subjects

    (subject,) = await eventually(replied)
    assert "Order 42 is late" in subject
    assert endpoint.requests and all(
        r["grant_type"] == "client_credentials" for r in endpoint.requests
    )

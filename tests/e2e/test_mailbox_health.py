"""Mailbox health: a failing account backs off, shows its error, recovers by itself, and never
holds up the others."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.config.accounts import AccountSettings
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts import search_attributes as sa
from ace_email.contracts.base import format_duration
from ace_email.contracts.contact import ContactStatus
from ace_email.contracts.mailbox import MailboxCursor, MailboxHealth, MailboxStatus
from ace_email.mail.errors import ImapError
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.common import contact_state
from ace_email.operations.registry import sync
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from starter import main
from tests.recording import record_history
from tests.support import (
    CUSTOMER,
    PASSWORD,
    MailStack,
    account_settings,
    eventually,
    free_port,
    make_message,
    write_config,
)
from worker import ACTIVITY_THREADS, build_worker
from workflows import activity_options
from workflows.mailbox import MailboxWorkflow

WRONG = "not-the-password-4711"


class SilentServer:
    """Accepts TCP connections and never says a word: the slowest way for a server to fail."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        for conn in self.accepted:
            conn.close()


@asynccontextmanager
async def running_worker(settings: Settings, client: Client) -> AsyncIterator[ImapPool]:
    pool = ImapPool(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, settings, pool, executor):
            yield pool
        pool.close_all()


def with_account(settings: Settings, name: str, address: str, **imap: object) -> AccountSettings:
    """Another account like the first, for `address`, with `imap` keys changed."""
    base = settings.accounts[0]
    account = base.model_copy(
        update={
            "name": name,
            "address": address,
            "return_address": address,
            "imap": base.imap.model_copy(update={"username": address, **imap}),
        }
    )
    settings.accounts.append(account)
    return account


async def queued(client: Client, account: str, raw: bytes) -> bool:
    contact = ids.contact_workflow_id(account, mime.message_key(raw))
    try:
        state = await contact_state(client, contact)
    except Exception as exc:
        raise AssertionError(str(exc)) from exc
    assert state.status is ContactStatus.QUEUED, state.status
    return True


async def mailbox_status(client: Client, account: str) -> MailboxStatus:
    handle = client.get_workflow_handle(ids.mailbox_workflow_id(account))
    return await handle.query(MailboxWorkflow.status)


def test_back_off_doubles_up_to_the_cap_and_never_polls_faster_than_healthy() -> None:
    second = timedelta(seconds=1)
    assert activity_options.poll_backoff(second, 0) == second
    assert [activity_options.poll_backoff(second, n).total_seconds() for n in (1, 2, 3)] == [
        2,
        4,
        8,
    ]
    assert activity_options.poll_backoff(second, 50) == activity_options.POLL_BACKOFF_MAX
    slow = timedelta(minutes=10)
    assert activity_options.poll_backoff(slow, 3) == slow


def test_lag_runs_from_the_oldest_waiting_email_or_the_last_successful_poll() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    status = MailboxStatus(account="a", cursor=MailboxCursor())
    assert status.lag(now) is None and status.health is None
    polled = status.model_copy(update={"last_success_at": now - timedelta(seconds=20)})
    assert polled.lag(now) == timedelta(seconds=20) and polled.health is MailboxHealth.OK
    waiting = polled.model_copy(
        update={"waiting": 2, "oldest_waiting_at": now - timedelta(minutes=5)}
    )
    assert waiting.lag(now) == timedelta(minutes=5)
    failing = waiting.model_copy(update={"last_error": "a: refused"})
    assert failing.health is MailboxHealth.FAILING and failing.lag(now) == timedelta(minutes=5)


def test_durations_read_as_people_say_them() -> None:
    assert [format_duration(timedelta(seconds=s)) for s in (0.5, 42, 200, 3600, 7500, 90000)] == [
        "0.5 s",
        "42 s",
        "3 min 20 s",
        "1 h",
        "2 h 5 min",
        "1 d 1 h",
    ]


async def test_a_silent_server_holds_one_thread_and_its_callers_get_a_precise_error(
    mail: MailStack, tmp_path: Path
) -> None:
    silent = SilentServer()
    settings = account_settings(
        name="quiet",
        stack=mail,
        temporal_address="127.0.0.1:1",
        namespace="default",
        task_queue="unused",
    )
    settings.accounts[0].imap = settings.accounts[0].imap.model_copy(
        update={"port": silent.port, "timeout_seconds": 1.0}
    )
    pool = ImapPool(settings)

    def use() -> str:
        try:
            with pool.session("quiet"):
                return "connected"
        except ImapError as exc:
            return str(exc)

    try:
        for round_ in (1, 2):
            with ThreadPoolExecutor(max_workers=8) as threads:
                errors = list(threads.map(lambda _: use(), range(8)))
            assert len(silent.accepted) == round_, "one attempt at a time per account"
            assert all(e.startswith("quiet: ") and f":{silent.port}" in e for e in errors)
            assert pool.failure("quiet") is not None
    finally:
        silent.close()
        pool.close_all()


async def test_a_mailbox_whose_password_goes_wrong_recovers_by_itself(
    settings: Settings, client: Client, mail: MailStack, tmp_path: Path
) -> None:
    account = settings.accounts[0].name
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD)
    settings.accounts[0].imap = settings.accounts[0].imap.model_copy(
        update={"password": None, "password_file": secret}
    )
    async with running_worker(settings, client) as pool:
        await sync(client, settings)
        first = make_message("Before the password changed")
        await mail.send(first)
        await eventually(lambda: queued(client, account, first))

        secret.write_text(WRONG)
        pool.close_all()

        async def failing() -> MailboxStatus:
            pool.close_all()  # a session lent out while the password changed comes back
            status = await mailbox_status(client, account)
            assert status.last_error and status.failures >= 2, status
            return status

        status = await eventually(failing, timeout=60)
        refused = (
            f"{account}: IMAP login as '{mail.support}' at 127.0.0.1:{mail.imap_port} was refused"
        )
        # Dovecot answers failed logins ever more slowly (its auth penalty), past the timeout.
        slow = f"{account}: IMAP 127.0.0.1:{mail.imap_port} failed during login: timed out"
        assert status.last_error in ((refused, slow) if mail.kind == "company" else (refused,))
        assert status.health is MailboxHealth.FAILING and status.failing_since is not None

        second = make_message("After the password was fixed")
        await mail.send(second)
        secret.write_text(PASSWORD)
        await eventually(lambda: queued(client, account, second), timeout=60)
        status = await mailbox_status(client, account)
        assert status.last_error is None and status.failures == 0
        assert status.health is MailboxHealth.OK

        handle = client.get_workflow_handle(ids.mailbox_workflow_id(account))
        await handle.signal(MailboxWorkflow.stop)
        await handle.result()
        await record_history(client, handle.id, "mailbox_polling")


async def test_failing_accounts_neither_hold_up_the_good_one_nor_stay_down(
    client: Client, temporal_address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    sales, dead, quiet = "sales@example.com", "dead@example.com", "quiet@example.com"
    users = [MailUser(a, PASSWORD) for a in ("support@example.com", sales, CUSTOMER)]
    imap_port, smtp_port = free_port(), free_port()
    server = LocalMailServer(tmp_path / "main", users, imap_port=imap_port, smtp_port=smtp_port)
    dead_port, silent = free_port(), SilentServer()
    revived_dead = LocalMailServer(
        tmp_path / "dead", [MailUser(dead, PASSWORD)], imap_port=dead_port, smtp_port=free_port()
    )
    revived_quiet = LocalMailServer(
        tmp_path / "quiet",
        [MailUser(quiet, PASSWORD)],
        imap_port=silent.port,
        smtp_port=free_port(),
    )
    wrong_password = tmp_path / "sales-password"
    wrong_password.write_text(WRONG)

    async with MailServerThread(server):
        stack = MailStack(server, imap_port, smtp_port, "support@example.com")
        settings = account_settings(
            name=f"good-{tag}",
            stack=stack,
            temporal_address=temporal_address,
            namespace="default",
            task_queue=f"ace-email-{tag}",
            auto_reply=False,
        )
        names = {"good": f"good-{tag}", "sales": f"sales-{tag}"}
        names |= {"dead": f"dead-{tag}", "quiet": f"quiet-{tag}"}
        with_account(settings, names["sales"], sales, password=None, password_file=wrong_password)
        with_account(settings, names["dead"], dead, port=dead_port)
        with_account(settings, names["quiet"], quiet, port=silent.port, timeout_seconds=2.0)
        config = str(write_config(tmp_path / "ace-email.toml", settings))

        async with running_worker(settings, client):
            assert await main(["--config", config, "sync"], client) == 0
            good_mail = make_message("Still flowing")
            await stack.send(good_mail)
            await eventually(lambda: queued(client, names["good"], good_mail))

            async def rows() -> dict[str, dict[str, Any]]:
                capsys.readouterr()
                assert await main(["--config", config, "accounts", "--json"], client) == 0
                found = {r["account"]: r for r in json.loads(capsys.readouterr().out)}
                for key in ("sales", "dead", "quiet"):
                    row = found[names[key]]
                    assert row["health"] == "failing" and row["failures"] >= 2, row
                    assert row["next_poll_at"] > row["last_poll_at"], row
                return found

            found = await eventually(rows, timeout=90)
            good = found[names["good"]]
            assert good["running"] and good["health"] == "ok" and good["last_error"] is None
            assert good["waiting"] == 0 and good["lag_seconds"] is not None
            assert good["last_success_at"]
            assert found[names["sales"]]["last_error"] == (
                f"{names['sales']}: IMAP login as '{sales}' at 127.0.0.1:{imap_port} was refused"
            )
            assert f"127.0.0.1:{dead_port}" in found[names["dead"]]["last_error"]
            assert f"127.0.0.1:{silent.port}" in found[names["quiet"]]["last_error"]
            assert all(WRONG not in json.dumps(row) for row in found.values())
            assert {"last_success_at", "last_error", "waiting", "lag_seconds"} <= good.keys()

            assert await main(["--config", config, "accounts"], client) == 0
            text = capsys.readouterr().out
            assert f"{names['good']}: ok, last success" in text
            assert f"{names['sales']}: FAILING, last success never" in text

            async def listed_failing() -> set[str]:
                query = (
                    f'{sa.MAILBOX_HEALTH.name}="failing" '
                    f'AND TaskQueue="{settings.temporal.task_queue}"'
                )
                listed = {e.id async for e in client.list_workflows(query)}
                assert len(listed) == 3, listed
                return listed

            assert await eventually(listed_failing) == {
                ids.mailbox_workflow_id(names[k]) for k in ("sales", "dead", "quiet")
            }

            second_good = make_message("Still flowing while others fail")
            await stack.send(second_good)
            await eventually(lambda: queued(client, names["good"], second_good))

            waiting = {
                "sales": make_message("Sales waited", to=sales),
                "dead": make_message("Dead server came back", to=dead),
                "quiet": make_message("Silent server came back", to=quiet),
            }
            server.deliver(sales, waiting["sales"])
            revived_dead.deliver(dead, waiting["dead"])
            revived_quiet.deliver(quiet, waiting["quiet"])
            wrong_password.write_text(PASSWORD)
            silent.close()
            async with MailServerThread(revived_dead), MailServerThread(revived_quiet):

                async def flows(key: str) -> bool:
                    return await eventually(
                        lambda: queued(client, names[key], waiting[key]), timeout=150
                    )

                await asyncio.gather(*(flows(key) for key in waiting))

                async def all_ok() -> list[dict[str, Any]]:
                    capsys.readouterr()
                    assert await main(["--config", config, "accounts", "--json"], client) == 0
                    result = json.loads(capsys.readouterr().out)
                    assert all(r["health"] == "ok" and r["failures"] == 0 for r in result), result
                    return list(result)

                await eventually(all_ok)


async def test_accounts_shows_a_poll_loop_that_is_not_running(
    settings: Settings, client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path / "ace-email.toml", settings))
    assert await main(["--config", config, "accounts", "--json"], client) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["running"] is False and row["health"] == "not running"
    assert "no poll loop; run `starter.py sync`" in row["last_error"]
    assert row["lag_seconds"] is None and row["waiting"] is None
    assert await main(["--config", config, "accounts"], client) == 0
    assert "NOT RUNNING" in capsys.readouterr().out

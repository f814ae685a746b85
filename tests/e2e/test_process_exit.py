"""Operators' scripts end with their own exit status, never a signal: the Temporal client's
native threads must not take a process down after its work is done (sdk-python#300)."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.temporal.codec import new_key_text
from tests.conftest import Pipeline
from tests.routing_support import new_tag, routed_settings, routing_worker
from tests.support import MailStack, eventually, free_port, make_message, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only]

ROOT = Path(__file__).resolve().parents[2]
RUNS = 200
AT_ONCE = 2


async def run_starter(config: Path, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "starter.py"),
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace")


@pytest.mark.timeout(600)
async def test_two_hundred_script_runs_end_with_their_own_status_while_mail_flows(
    client: Client, mail: MailStack, temporal_address: str, tmp_path: Path
) -> None:
    tag = new_tag()
    bob = f"bob-{tag}"
    settings = routed_settings(
        mail, temporal_address, tag, queues=[{"name": f"support-{tag}"}], agents=[{"id": bob}]
    )
    async with routing_worker(client, mail, settings) as pipeline:
        await _two_hundred_runs(pipeline, tmp_path, bob)


async def _two_hundred_runs(pipeline: Pipeline, tmp_path: Path, bob: str) -> None:
    config = write_config(tmp_path / "ace-email.toml", pipeline.settings)
    account = pipeline.account
    assert (await run_starter(config, "sync"))[0] == 0
    first = make_message("Before the runs")
    await pipeline.mail.send(first)
    contact = ids.contact_workflow_id(account, mime.message_key(first))

    async def queued() -> bool:
        return (await run_starter(config, "status", contact))[0] == 0

    await eventually(queued)
    commands: list[tuple[str, ...]] = [
        ("list",),
        ("list", "--json"),
        ("status", contact),
        ("status", contact, "--json"),
        ("queues", "--json"),
        ("agents",),
        ("accounts", "--json"),
        ("inbox", bob),
        ("poll-now", account),
        ("agent", "not-ready", bob),
        ("sync",),
        ("status", "contact-nobody-0"),
    ]
    expected: dict[tuple[str, ...], int] = {("status", "contact-nobody-0"): 1}
    plan = list(itertools.islice(itertools.cycle(commands), RUNS))
    outcomes: list[tuple[tuple[str, ...], int, str]] = []
    sent = 0

    async def runner(lane: int) -> None:
        nonlocal sent
        for args in plan[lane::AT_ONCE]:
            code, err = await run_starter(config, *args)
            outcomes.append((args, code, err))
            if lane == 0 and len(outcomes) % 20 == 0:  # mail keeps flowing meanwhile
                sent += 1
                await pipeline.mail.send(make_message(f"During the runs {sent}"))

    await asyncio.gather(*(runner(lane) for lane in range(AT_ONCE)))
    assert len(outcomes) == RUNS
    deaths = [(args, code, err[-300:]) for args, code, err in outcomes if code < 0 or code > 2]
    assert deaths == [], f"{len(deaths)} of {RUNS} runs ended by a signal: {deaths[:3]}"
    wrong = [(a, c, e[-300:]) for a, c, e in outcomes if c != expected.get(a, 0)]
    assert wrong == []
    assert not [e for _, _, e in outcomes if "Fatal Python error" in e]


def _started(process: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"it stopped: {process.stdout and process.stdout.read()!r}"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port} after {timeout} s")


@pytest.mark.parametrize("service", ["ace_email.intake_server", "ace_email.codec_server"])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_service_stops_on_a_signal_with_status_zero(
    settings: Settings, tmp_path: Path, service: str, stop_signal: signal.Signals
) -> None:
    """Also where SIGINT was ignored at start, as for a job started with `&`."""
    port = free_port()
    config = write_config(tmp_path / "ace-email.toml", settings)
    token = tmp_path / "token"
    token.write_text("a-token\n")
    keys = tmp_path / "payload.keys"
    keys.write_text(f"one:{new_key_text()}\n")
    with config.open("a") as toml:
        toml.write(f'\n[intake]\nport = {port}\ntoken_file = "{token}"\n')
        toml.write(f'\n[temporal.encryption]\nkey_id = "one"\nkey_file = "{keys}"\n')
        toml.write(f"\n[temporal.codec_server]\nport = {port}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", service, "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        _started(process, port)
        process.send_signal(stop_signal)
        assert process.wait(timeout=20) == 0, process.stdout and process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

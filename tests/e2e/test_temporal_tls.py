"""Temporal behind a TLS-terminating gRPC proxy (nginx), as clusters and Temporal Cloud stand:
the worker runs the pipeline through mutual TLS, the scripts through an API key; a missing or
untrusted client certificate, an unknown server CA, a wrong server name and a wrong or missing
API key are each refused with exit 1 and one line that says what to fix."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from ace_email.analysis import mime
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from devtools import grpc_proxy
from devtools.grpc_proxy import GrpcTlsProxy
from tests.support import (
    CUSTOMER,
    MailStack,
    eventually,
    free_port,
    make_message,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "ACE_TEST_TEMPORAL_API_KEY"


@pytest.fixture(scope="module")
def proxy(temporal_env: WorkflowEnvironment) -> Iterator[GrpcTlsProxy]:
    reason = grpc_proxy.unavailable_reason()
    if reason is not None:
        if os.environ.get("GRPC_PROXY_REQUIRED"):
            pytest.fail(f"the TLS proxy (nginx) is required: {reason}")
        pytest.skip(f"the TLS proxy (nginx) cannot run: {reason}")
    upstream = temporal_env.client.service_client.config.target_host
    directory = Path(tempfile.mkdtemp(prefix="ace-grpc-proxy-"))
    key = secrets.token_urlsafe(24)
    try:
        with GrpcTlsProxy(directory, upstream, free_port(), free_port(), key) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def tls_toml(
    *,
    ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    server_name: str | None = None,
) -> str:
    lines = ["[temporal.tls]"]
    if ca is not None:
        lines.append(f'server_ca_file = "{ca}"')
    if server_name is not None:
        lines.append(f'server_name = "{server_name}"')
    if cert is not None and key is not None:
        lines += [f'client_cert_file = "{cert}"', f'client_key_file = "{key}"']
    return "\n".join(lines) + "\n"


def config_through(
    path: Path, settings: Settings, port: int, tls: str, api_key: bool = False
) -> Path:
    address = f"127.0.0.1:{port}"
    moved = settings.model_copy(
        update={"temporal": settings.temporal.model_copy(update={"address": address})}
    )
    key_line = f'api_key_env = "{KEY_ENV}"' if api_key else ""
    return write_config(path, moved, extra_toml=tls, temporal_toml=key_line)


async def run_script(*argv: str, key: str | None = None) -> tuple[int, str, str]:
    env = {**os.environ, KEY_ENV: key} if key is not None else dict(os.environ)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_worker_and_the_scripts_run_the_pipeline_through_the_proxy(
    proxy: GrpcTlsProxy, mail: MailStack, settings: Settings, tmp_path: Path
) -> None:
    certs = proxy.certificates
    worker_config = config_through(
        tmp_path / "worker.toml",
        settings,
        proxy.mtls_port,
        tls_toml(ca=certs.server_ca, cert=certs.client.cert, key=certs.client.key),
    )
    script_config = config_through(
        tmp_path / "scripts.toml",
        settings,
        proxy.api_key_port,
        tls_toml(ca=certs.server_ca, server_name="temporal.internal"),
        api_key=True,
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "worker.py", "--config", str(worker_config)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        code, _, err = await run_script(
            "starter.py", "--config", str(script_config), "sync", key=proxy.api_key
        )
        assert code == 0, err
        raw = make_message("Through the proxy")
        await mail.send(raw)
        contact_id = ids.contact_workflow_id(settings.accounts[0].name, mime.message_key(raw))

        async def replied() -> dict[str, object]:
            code, out, err = await run_script(
                "starter.py",
                "--config",
                str(script_config),
                "status",
                contact_id,
                "--json",
                key=proxy.api_key,
            )
            assert code == 0, err
            state = json.loads(out)
            assert state["status"] == "queued" and str(state["auto_reply"]).startswith("sent")
            return dict(state)

        await eventually(replied, timeout=60, interval=0.5)
        replies = await mail.messages(CUSTOMER)
        assert any("Through the proxy" in str(reply["Subject"]) for reply in replies)
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0, log.read_text()[-3000:]
    assert proxy.api_key not in log.read_text()


REFUSALS: dict[str, tuple[str, dict[str, object], str]] = {
    "no client certificate": (
        "mtls",
        {},
        "the server wants a client certificate (mutual TLS); set temporal.tls.client_cert_file",
    ),
    "an untrusted client certificate": (
        "mtls",
        {"untrusted": True},
        "the server refused our client certificate (temporal.tls.client_cert_file)",
    ),
    "an unknown server CA": (
        "mtls",
        {"unknown_ca": True},
        "the server's certificate is not signed by the configured CA",
    ),
    "a wrong server name": (
        "mtls",
        {"server_name": "wrong.example"},
        "the server's certificate is not made out to this host name",
    ),
    "a wrong API key": ("key", {"key": "not-the-key"}, "the API key was refused"),
    "no API key": ("key", {}, "the server wants credentials: an API key"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
@pytest.mark.parametrize("script", ["starter.py", "worker.py", "intake server"])
async def test_a_refused_connection_is_one_line_and_exit_1(
    proxy: GrpcTlsProxy,
    settings: Settings,
    tmp_path: Path,
    case: str,
    script: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port_kind, options, words = REFUSALS[case]
    monkeypatch.setenv("ACE_TEST_INTAKE_TOKEN", secrets.token_urlsafe(16))
    intake = f'[intake]\nport = {free_port()}\ntoken_env = "ACE_TEST_INTAKE_TOKEN"\n'

    certs = proxy.certificates
    ca = certs.unknown_ca if options.get("unknown_ca") else certs.server_ca
    server_name = options.get("server_name")
    assert server_name is None or isinstance(server_name, str)
    key = options.get("key")
    assert key is None or isinstance(key, str)
    if port_kind == "mtls":
        client = certs.untrusted_client if options.get("untrusted") else certs.client
        with_cert = bool(options) and case != "no client certificate"
        tls = tls_toml(
            ca=ca,
            cert=client.cert if with_cert else None,
            key=client.key if with_cert else None,
            server_name=server_name,
        )
        config = config_through(
            tmp_path / "c.toml",
            settings,
            proxy.mtls_port,
            intake + tls,
        )
    else:
        config = config_through(
            tmp_path / "c.toml",
            settings,
            proxy.api_key_port,
            intake + tls_toml(ca=certs.server_ca),
            api_key=key is not None,
        )
    argv = {
        "starter.py": ["starter.py", "--config", str(config), "list"],
        "worker.py": ["worker.py", "--config", str(config)],
        "intake server": ["-m", "ace_email.intake_server", "--config", str(config)],
    }[script]
    code, out, err = await run_script(*argv, key=key)
    lines = err.strip().splitlines()
    assert code == 1, (code, err)
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err + out
    assert proxy.api_key not in err + out and (key is None or key not in err + out)

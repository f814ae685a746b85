"""No password, key, token or message body in any workflow history or any log line.

The whole pipeline runs with encryption on: a worker process (worker.py, DEBUG logging) and the
operator's commands in this process. Every secret and every body carries a distinctive canary.
Afterwards every history on the test's task queue is read, its payloads decrypted the way the
Web UI's codec server shows them, and searched together with every log line for the canaries.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf.message import Message as ProtoMessage
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.config.settings import Settings, load_settings
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations import desk
from ace_email.operations.contacts import assign
from ace_email.operations.registry import sync
from ace_email.operations.workitems import create_work_item, parse_request
from ace_email.temporal.client import connect, encryption_codec
from ace_email.temporal.codec import EncryptionCodec
from devtools.localmail import LocalMailServer, MailServerThread, MailUser
from tests.support import (
    AGENT_EMAIL,
    CUSTOMER,
    PASSWORD,
    MailStack,
    eventually,
    free_port,
    make_message,
)
from tests.support import wait_status as wait_for_status

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = "support@example.com"
# Not secret, and shown by design: seeing them proves the scan reads decrypted text.
CONTROLS = ("Kettle", "Toaster", CUSTOMER)


def canary(kind: str) -> str:
    return f"CANARY{kind}{uuid.uuid4().hex[:12]}"


def payloads_in(message: ProtoMessage, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a protobuf message, with its field path."""
    if isinstance(message, Payload):
        yield path, message
        return
    for descriptor, value in message.ListFields():
        where = f"{path}.{descriptor.name}"
        if descriptor.message_type is None:
            continue
        if isinstance(value, ProtoMessage):
            yield from payloads_in(value, where)
        elif hasattr(value, "items"):
            for key, item in value.items():
                if isinstance(item, ProtoMessage):
                    yield from payloads_in(item, f"{where}[{key}]")
        else:
            for index, item in enumerate(value):
                yield from payloads_in(item, f"{where}[{index}]")


def decrypted_text(message: ProtoMessage, codec: EncryptionCodec) -> str:
    """The message as readable text: its JSON, plus each payload decrypted and decoded."""
    parts = [str(message)]
    for _, payload in payloads_in(message):
        plain = codec.decrypt(payload)
        parts += [v.decode("utf-8", "replace") for v in plain.metadata.values()]
        parts.append(plain.data.decode("utf-8", "replace"))
    return "\n".join(parts)


@dataclass
class Scan:
    histories: int = 0
    events: int = 0
    payloads: int = 0
    log_lines: int = 0
    leaks: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def check(self, where: str, text: str, canaries: dict[str, str]) -> None:
        if where.startswith("history"):
            self.seen |= {control for control in CONTROLS if control in text}
        for name, value in canaries.items():
            if value in text:
                line = next(line for line in text.splitlines() if value in line)
                self.leaks.append(f"{name} in {where}: {line[:300]}")


# The embedded mail server stands in for the company's mail server; what it logs is its own.
MAIL_SERVER_LOGGERS = ("mail.log", "pymap", "devtools.localmail")


class ListHandler(logging.Handler):
    """Every log record of this process, except the mail server's."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(MAIL_SERVER_LOGGERS):
            return
        self.lines.append(self.format(record))


@pytest.fixture
def root_log() -> Iterator[ListHandler]:
    handler = ListHandler()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclass
class Secrets:
    imap_password: str
    smtp_password: str
    current_key: str
    old_key: str
    codec_token: str

    def canaries(self) -> dict[str, str]:
        key = base64.b64decode(self.current_key)
        return {
            "IMAP password": self.imap_password,
            "SMTP password": self.smtp_password,
            "encryption key": self.current_key,
            "encryption key (hex)": key.hex(),
            "old encryption key": self.old_key,
            "codec server token": self.codec_token,
        }


@pytest.fixture
async def support_mail(tmp_path: Path) -> AsyncIterator[tuple[MailStack, str]]:
    """A mail server whose support mailbox has a canary password."""
    imap_password = canary("imap")
    imap_port, smtp_port = free_port(), free_port()
    users = [
        MailUser(SUPPORT, imap_password),
        MailUser(CUSTOMER, PASSWORD),
        MailUser(AGENT_EMAIL, PASSWORD),
    ]
    server = LocalMailServer(tmp_path / "mail", users, imap_port=imap_port, smtp_port=smtp_port)
    async with MailServerThread(server):
        yield (
            MailStack(server=server, imap_port=imap_port, smtp_port=smtp_port, support=SUPPORT),
            imap_password,
        )


def write_scan_config(
    directory: Path, stack: MailStack, temporal_address: str, secrets: Secrets
) -> Path:
    keys = directory / "payload.keys"
    keys.write_text(f"# rotated keys\nold:{secrets.old_key}\ncurrent:{secrets.current_key}\n")
    token = directory / "codec.token"
    token.write_text(secrets.codec_token)
    smtp_password = directory / "smtp.password"
    smtp_password.write_text(secrets.smtp_password)
    config = directory / "ace-email.toml"
    config.write_text(
        f"""
[temporal]
address = "{temporal_address}"
namespace = "default"
task_queue = "ace-email-scan-{uuid.uuid4().hex[:8]}"

[temporal.encryption]
key_id = "current"
key_file = "{keys}"

[temporal.codec_server]
token_file = "{token}"

[[accounts]]
name = "scan-{uuid.uuid4().hex[:8]}"
address = "{SUPPORT}"
return_address = "{SUPPORT}"
queue = "support"
auto_reply_period_hours = 0

[accounts.imap]
host = "127.0.0.1"
port = {stack.imap_port}
security = "none"
username = "{SUPPORT}"
password_env = "ACE_SCAN_IMAP_PASSWORD"
poll_interval_seconds = 0.5
timeout_seconds = 5

[accounts.smtp]
host = "127.0.0.1"
port = {stack.smtp_port}
security = "none"
password_file = "{smtp_password}"
timeout_seconds = 5

[[queues]]
name = "support"
channels = ["email", "workitem"]

[[agents]]
id = "alice"
name = "Alice Andersson"
email = "{AGENT_EMAIL}"

[[agents]]
id = "bob"
name = "Bob Builtin"
""",
        encoding="utf-8",
    )
    return config


def contact_id(settings: Settings, raw: bytes) -> str:
    return ids.contact_workflow_id(settings.accounts[0].name, mime.message_key(raw))


async def wait_status(client: Client, contact: str, *statuses: ContactStatus) -> ContactState:
    return await wait_for_status(client, contact, *statuses, timeout=90)


async def scan_histories(
    client: Client, task_queue: str, codec: EncryptionCodec, canaries: dict[str, str], scan: Scan
) -> None:
    async for execution in client.list_workflows(f'TaskQueue="{task_queue}"'):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        where = f"history of {execution.id}"
        scan.histories += 1
        scan.events += len(history.events)
        for event in history.events:
            scan.payloads += sum(1 for _ in payloads_in(event))
            scan.check(where, decrypted_text(event, codec), canaries)
        scan.check(f"raw {where}", history.to_json(), canaries)
        description = await handle.describe()
        scan.check(
            f"description of {execution.id}",
            decrypted_text(description.raw_description, codec),
            canaries,
        )


async def test_no_secret_or_body_in_any_history_or_log(
    support_mail: tuple[MailStack, str],
    temporal_address: str,
    root_log: ListHandler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("KEY_ID", "KEY_ENV", "KEY_FILE"):
        monkeypatch.delenv(f"ACE_EMAIL_TEMPORAL__ENCRYPTION__{name}", raising=False)
    stack, imap_password = support_mail
    monkeypatch.setenv("ACE_SCAN_IMAP_PASSWORD", imap_password)  # the work item, the reply
    secrets = Secrets(
        imap_password=imap_password,
        smtp_password=canary("smtp"),
        current_key=base64.b64encode(os.urandom(32)).decode(),
        old_key=os.urandom(32).hex(),
        codec_token=canary("token"),
    )
    bodies = {
        name: canary(name)
        for name in ("body1", "body2", "followup", "absence", "file", "workitem", "reply")
    }
    config = write_scan_config(tmp_path, stack, temporal_address, secrets)
    settings = load_settings(config)
    client = await connect(settings.temporal)
    assert settings.temporal.encryption is not None
    codec = encryption_codec(settings.temporal.encryption)

    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "worker.py", "--config", str(config), "--log-level", "DEBUG"],
            cwd=ROOT,
            env={**os.environ, "ACE_SCAN_IMAP_PASSWORD": imap_password},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        await sync(client, settings)
        first = make_message(
            "Kettle",
            f"It leaks. {bodies['body1']}",
            attachment=("photo.bin", f"image {bodies['file']} data".encode()),
        )
        second = make_message("Toaster", f"It burns. {bodies['body2']}")
        absence = make_message(
            "Out of office",
            f"I am away. {bodies['absence']}",
            headers={"Auto-Submitted": "auto-replied"},
        )
        for raw in (first, second, absence):
            await stack.send(raw)
        first_id, second_id = contact_id(settings, first), contact_id(settings, second)
        await wait_status(client, first_id, ContactStatus.QUEUED)
        await wait_status(client, second_id, ContactStatus.QUEUED)
        await wait_status(client, contact_id(settings, absence), ContactStatus.QUEUED)

        async def replies() -> list[str]:
            messages = await stack.messages(CUSTOMER)
            assert len(messages) == 2, len(messages)
            return [str(m["Message-ID"]) for m in messages if "Kettle" in str(m["Subject"])]

        reply_id = (await eventually(replies, timeout=60))[0]
        await assign(client, settings, first_id, "alice")
        await assign(client, settings, second_id, "bob")
        await wait_status(client, first_id, ContactStatus.DELIVERED)
        await wait_status(client, second_id, ContactStatus.ASSIGNED)

        follow_up = make_message(
            "Re: Kettle",
            f"Still leaking. {bodies['followup']}",
            headers={"In-Reply-To": reply_id, "References": reply_id},
        )
        await stack.send(follow_up)
        await wait_status(client, contact_id(settings, follow_up), ContactStatus.JOINED)

        async def delivered_to_alice() -> int:
            count = await stack.count(AGENT_EMAIL)
            assert count == 2, count
            return count

        await eventually(delivered_to_alice, timeout=60)

        pool = ImapPool(settings)
        try:
            form = {
                "queue": "support",
                "subject": "Contact form",
                "body": f"My lid broke. {bodies['workitem']}",
                "reply_to": CUSTOMER,
                "external_id": "scan-form-1",
            }
            item = await create_work_item(client, settings, pool, parse_request(form))
        finally:
            pool.close_all()
        await wait_status(client, item.contact_id, ContactStatus.QUEUED)
        answer = f"We send a new toaster. {bodies['reply']}"
        await desk.reply(client, settings, second_id, answer, close=True)
        await wait_status(client, second_id, ContactStatus.CLOSED)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    canaries = secrets.canaries() | {f"message {k}": v for k, v in bodies.items()}
    attachment_b64 = base64.b64encode(f"image {bodies['file']} data".encode()).decode()
    canaries["attachment (base64)"] = attachment_b64[:24]
    scan = Scan()
    await scan_histories(client, settings.temporal.task_queue, codec, canaries, scan)

    worker_lines = worker_log.read_text(encoding="utf-8", errors="replace").splitlines()
    own_lines = list(root_log.lines)
    scan.log_lines = len(worker_lines) + len(own_lines)
    scan.check("worker.py output", "\n".join(worker_lines), canaries)
    scan.check("log of this process", "\n".join(own_lines), canaries)

    print(
        f"\nscanned {scan.histories} histories, {scan.events} events, {scan.payloads} payloads, "
        f"{scan.log_lines} log lines ({len(worker_lines)} from worker.py) "
        f"for {len(canaries)} canaries"
    )
    assert scan.histories >= 6
    assert scan.seen == set(CONTROLS), scan.seen
    assert any("DEBUG" in line for line in worker_lines), "worker.py logged nothing at DEBUG"
    assert not scan.leaks, "\n".join(scan.leaks)

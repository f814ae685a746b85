"""Helpers for tests that talk to real servers on loopback."""

from __future__ import annotations

import asyncio
import email
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from pathlib import Path
from typing import TypeVar

import aiosmtplib
from imap_tools import MailBoxUnencrypted
from temporalio.client import Client
from temporalio.service import RPCError

from ace_email.config.settings import Settings
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.operations.common import Refused, contact_state
from devtools.companymail.stack import CompanyMail
from devtools.localmail import LocalMailServer, MailServerThread, MailUser

T = TypeVar("T")

PASSWORD = "local-test-password"
CUSTOMER = "customer@example.org"
AGENT_EMAIL = "alice@example.com"
SECOND_AGENT_EMAIL = "carol@example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_status(
    client: Client, contact_id: str, *statuses: ContactStatus, timeout: float = 30.0
) -> ContactState:
    """The contact's state once it is in one of `statuses`."""

    async def check() -> ContactState:
        try:
            state = await contact_state(client, contact_id)
        except Refused as exc:  # not started yet
            raise AssertionError(str(exc)) from None
        assert state.status in statuses, f"{contact_id} is {state.status.value}"
        return state

    return await eventually(check, timeout=timeout)


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0, interval: float = 0.2
) -> T:
    """Poll `check` until it returns a truthy value without raising; returns that value."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = await check()
            if value:
                return value
        except (AssertionError, RPCError, Refused) as exc:  # not yet, or a worker restarting
            last_error = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {last_error or value!r}")
        await asyncio.sleep(interval)


class MailStack:
    """A running mail server and the addresses a test uses: the embedded one (`server`), or
    the company's Dovecot and Postfix (`company`)."""

    def __init__(
        self,
        server: LocalMailServer | None,
        imap_port: int,
        smtp_port: int,
        support: str,
        company: CompanyMail | None = None,
    ) -> None:
        if (server is None) == (company is None):
            raise ValueError("a MailStack runs on either the embedded server or the company's")
        self.imap_port = imap_port
        self.smtp_port = smtp_port
        self.support = support
        self.company = company
        self._server = server

    @property
    def kind(self) -> str:
        return "embedded" if self._server is not None else "company"

    @property
    def server(self) -> LocalMailServer:
        """The embedded server; a test that needs it does not run on the company stack."""
        if self._server is None:
            raise AssertionError("the company stack has no embedded server")
        return self._server

    def deliver(self, user: str, raw: bytes) -> None:
        """Put `raw` into `user`'s INBOX as it is, bypassing SMTP."""
        if self.company is not None:
            self.company.deliver(user, raw)
        else:
            self.server.deliver(user, raw)

    def settle(self) -> None:
        """Postfix answers 250 before the mail is in the mailbox (the embedded server after):
        a look into a mailbox of the company stack waits for Postfix's queue to empty."""
        if self.company is not None:
            self.company.wait_for_queue()

    async def send(self, raw: bytes, *, to: str | None = None, sender: str = CUSTOMER) -> None:
        await aiosmtplib.send(
            raw,
            sender=sender,
            recipients=[to or self.support],
            hostname="127.0.0.1",
            port=self.smtp_port,
        )

    def folder(self, user: str, folder: str = "INBOX") -> list[Message]:
        """Every message in a folder of a user's mailbox, parsed with LF line endings (by UID
        FETCH: a FETCH the server sends unasked, for mail arriving meanwhile, is no message)."""
        return [
            email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=default_policy)
            for _, raw, _ in self.raw_folder(user, folder)
        ]

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        """The UIDs in a folder, without fetching or parsing anything (cheap on odd mail)."""
        self.settle()
        with MailBoxUnencrypted("127.0.0.1", self.imap_port).login(
            user, PASSWORD, initial_folder=None
        ) as box:
            status, _ = box.client.select(f'"{folder}"', True)
            if status != "OK":
                return []
            _, data = box.client.uid("SEARCH", "ALL")
            return [int(u) for u in data[0].split()] if data and data[0] else []

    async def count(self, user: str, folder: str = "INBOX") -> int:
        return len(await asyncio.to_thread(self.uids, user, folder))

    async def messages(self, user: str, folder: str = "INBOX") -> list[Message]:
        return await asyncio.to_thread(self.folder, user, folder)

    def raw_folder(
        self, user: str, folder: str = "INBOX"
    ) -> list[tuple[int, bytes, tuple[str, ...]]]:
        self.settle()
        with MailBoxUnencrypted("127.0.0.1", self.imap_port).login(
            user, PASSWORD, initial_folder=None
        ) as box:
            status, _ = box.client.select(f'"{folder}"', True)
            if status != "OK":
                return []
            _, data = box.client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            result = []
            for item in data:
                if isinstance(item, tuple) and b"UID " in item[0]:
                    head = item[0].decode()
                    uid = int(head.split("UID ")[1].split()[0])
                    flags = (
                        tuple(head.split("FLAGS (")[1].split(")")[0].split())
                        if "FLAGS (" in head
                        else ()
                    )
                    result.append((uid, item[1], flags))
            return result


def make_message(
    subject: str = "My order has not arrived",
    body: str = "Hello, where is my parcel?",
    *,
    sender: str = CUSTOMER,
    to: str = "support@example.com",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = f"Carla Customer <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = message_id or f"<{uuid.uuid4()}@example.org>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if attachment:
        message.add_attachment(
            attachment[1], maintype="application", subtype="octet-stream", filename=attachment[0]
        )
    return message.as_bytes()


def delivery_status_notification(returned: Message, to: str, recipient: str) -> bytes:
    """What Postfix sends back to `to` when `recipient` of the `returned` message does not
    exist (RFC 3464): a multipart/report with the returned message's headers."""
    headers = "".join(f"{name}: {value}\n" for name, value in returned.items())
    text = f"""\
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: {email.utils.formatdate()}
Message-ID: {email.utils.make_msgid(domain="mx.example.org")}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B0UND.1"

--B0UND.1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.org said: 550 5.1.1 <{recipient}>:
    Recipient address rejected: User unknown in virtual mailbox table

--B0UND.1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: {email.utils.formatdate()}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User
    unknown in virtual mailbox table

--B0UND.1
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{headers}
--B0UND.1--
"""
    return text.encode()


def account_settings(
    *,
    name: str,
    stack: MailStack,
    temporal_address: str,
    namespace: str,
    task_queue: str,
    auto_reply: bool = True,
    poll_interval: float = 0.5,
    account_extra: dict[str, object] | None = None,
    extra: dict[str, object] | None = None,
    agents: list[dict[str, object]] | None = None,
    imap_extra: dict[str, object] | None = None,
) -> Settings:
    """One account on the test's mail stack; `account_extra`, `imap_extra` and `extra` add
    keys (rules, templates, queues) to the account, its `imap` table and the top level;
    `agents` replaces alice (with an address) and bob (built-in)."""
    return Settings.model_validate(
        (extra or {})
        | {
            "temporal": {
                "address": temporal_address,
                "namespace": namespace,
                "task_queue": task_queue,
            },
            "accounts": [
                {
                    "name": name,
                    "address": stack.support,
                    "return_address": stack.support,
                    "queue": "support",
                    "auto_reply": auto_reply,
                    "imap": {
                        "host": "127.0.0.1",
                        "port": stack.imap_port,
                        "security": "none",
                        "username": stack.support,
                        "password": PASSWORD,
                        "poll_interval_seconds": poll_interval,
                        "timeout_seconds": 5,
                    }
                    | (imap_extra or {}),
                    "smtp": {
                        "host": "127.0.0.1",
                        "port": stack.smtp_port,
                        "security": "none",
                        "timeout_seconds": 5,
                    },
                }
                | (account_extra or {})
            ],
            "agents": agents
            if agents is not None
            else [
                {"id": "alice", "name": "Alice Andersson", "email": AGENT_EMAIL},
                {"id": "bob", "name": "Bob Builtin"},
            ],
        }
    )


def write_config(
    path: Path,
    settings: Settings,
    password_env: str | None = None,
    extra_toml: str = "",
    temporal_toml: str = "",
) -> Path:
    """The same settings as a TOML file, the way an operator writes them; `extra_toml` adds
    tables of its own (`[metrics]`, say), `temporal_toml` keys to `[temporal]`."""
    lines = [
        "[temporal]",
        f'address = "{settings.temporal.address}"',
        f'namespace = "{settings.temporal.namespace}"',
        f'task_queue = "{settings.temporal.task_queue}"',
        temporal_toml,
    ]
    for account in settings.accounts:
        lines += [
            "",
            "[[accounts]]",
            f'name = "{account.name}"',
            f'address = "{account.address}"',
            f'return_address = "{account.reply_from}"',
            f'queue = "{account.queue}"',
            f"auto_reply = {'true' if account.auto_reply else 'false'}",
            f"auto_reply_period_hours = {account.auto_reply_period_hours}",
            "",
            "[accounts.imap]",
            f'host = "{account.imap.host}"',
            f"port = {account.imap.port}",
            f'security = "{account.imap.security.value}"',
            f'username = "{account.imap.username}"',
            f'password_env = "{password_env}"'
            if password_env
            else f'password = "{account.imap.secret()}"',
            f"poll_interval_seconds = {account.imap.poll_interval_seconds}",
            f"timeout_seconds = {account.imap.timeout_seconds}",
            "",
            "[accounts.smtp]",
            f'host = "{account.smtp.host}"',
            f"port = {account.smtp.port}",
            f'security = "{account.smtp.security.value}"',
            f"timeout_seconds = {account.smtp.timeout_seconds}",
        ]
    lines += [
        "",
        "[routing]",
        f"offer_timeout_seconds = {settings.routing.offer_timeout_seconds}",
        f"personal_wait_minutes = {settings.routing.personal_wait_minutes}",
    ]
    for queue in settings.queues:
        channels = ", ".join(f'"{c.value}"' for c in queue.channels)
        lines += ["", "[[queues]]", f'name = "{queue.name}"', f"channels = [{channels}]"]
    for agent in settings.agents:
        lines += ["", "[[agents]]", f'id = "{agent.id}"', f'name = "{agent.name}"']
        lines.append(f"capacity = {agent.capacity}")
        if agent.email:
            lines.append(f'email = "{agent.email}"')
        if agent.queues:
            lines.append(f"queues = [{', '.join(repr(q) for q in agent.queues)}]")
    lines.append(extra_toml)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@asynccontextmanager
async def embedded_mail(directory: Path, addresses: Sequence[str]) -> AsyncIterator[MailStack]:
    """The embedded mail server with a mailbox for each address (customers whose automatic
    replies must arrive, say) besides support@ and the agents'."""
    imap_port, smtp_port = free_port(), free_port()
    everyone = dict.fromkeys(["support@example.com", AGENT_EMAIL, SECOND_AGENT_EMAIL, *addresses])
    users = [MailUser(address, PASSWORD) for address in everyone]
    server = LocalMailServer(directory, users, imap_port=imap_port, smtp_port=smtp_port)
    async with MailServerThread(server):
        yield MailStack(server, imap_port, smtp_port, "support@example.com")

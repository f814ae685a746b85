"""Faults between ace-email and the servers it talks to: a Temporal dev server that can be
restarted on its own data, workers that can be killed, an IMAP line that can be cut and an SMTP
relay that can go away, defer or refuse."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from ace_email.contracts import search_attributes as sa
from devtools.localmail import TrackedSMTP

ROOT = Path(__file__).resolve().parents[1]
TEMPORAL_CLI = Path(sys.executable).parent / "temporal"

TEMPORAL_ARGS = [
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    "--dynamic-config-value",
    "frontend.enableUpdateWorkflowExecution=true",
]


async def _stop_process(process: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()


class TemporalDevServer:
    """`temporal server start-dev` on a SQLite file: stopped and started again, it keeps it all."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self._db = data_dir / "temporal.db"
        self._log = data_dir / "temporal.log"
        self._process: asyncio.subprocess.Process | None = None
        self.restarts = 0

    def _command(self) -> list[str]:
        command = [
            str(TEMPORAL_CLI),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db-filename",
            str(self._db),
            "--log-level",
            "warn",
            *TEMPORAL_ARGS,
        ]
        for key in sa.ALL:
            command += ["--search-attribute", f"{key.name}={sa.type_name(key)}"]
        return command

    async def start(self, timeout: float = 60.0) -> None:
        with self._log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._command(), stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.returncode is not None:
                raise RuntimeError(f"the Temporal dev server exited; see {self._log}")
            try:
                client = await self.connect()
                await client.count_workflows()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    async def connect(self) -> Client:
        return await Client.connect(
            self.address, namespace="default", data_converter=pydantic_data_converter
        )

    async def stop(self) -> None:
        if self._process is not None:
            await _stop_process(self._process)
            self._process = None

    async def restart(self) -> float:
        """Stop, then start on the same port and data; returns how long it was away."""
        began = time.monotonic()
        await self.stop()
        await self.start()
        self.restarts += 1
        return time.monotonic() - began


class WorkerSupervisor:
    """`worker.py` as operators run it under a supervisor that starts it again when it dies."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self._config = config
        self._log = log
        self._env = {**os.environ, **(env or {})}
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.kills = 0
        self.killed_at: list[float] = []
        self.starts = 0
        self.unexpected_exits: list[int] = []

    async def _spawn(self) -> asyncio.subprocess.Process:
        with self._log.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "worker.py",
                "--config",
                str(self._config),
                cwd=ROOT,
                env=self._env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.starts += 1
        return process

    async def _supervise(self) -> None:
        while not self._stopping:
            self._process = await self._spawn()
            code = await self._process.wait()
            if self._stopping:
                return
            if code != -signal.SIGKILL:
                self.unexpected_exits.append(code)
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise())

    async def kill(self) -> None:
        """SIGKILL the running worker; the supervisor starts a new one."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGKILL)
        self.killed_at.append(time.time())
        await process.wait()
        self.kills += 1

    async def stop(self) -> None:
        self._stopping = True
        if self._process is not None:
            await _stop_process(self._process)
        if self._task is not None:
            await self._task


class Outages:
    """A listener that can be taken away for a while: refuses new connections, cuts open ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.down_seconds = 0.0
        self.began_at: list[float] = []

    async def _listen(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def outage(self, seconds: float) -> None:
        self.count += 1
        self.began_at.append(time.time())
        began = time.monotonic()
        await self._close()
        await asyncio.sleep(seconds)
        await self._listen()
        self.down_seconds += time.monotonic() - began


class TcpProxy(Outages):
    """Passes bytes between clients on `port` and the server at `upstream_port`."""

    def __init__(self, name: str, port: int, upstream_port: int) -> None:
        super().__init__(name)
        self.port = port
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port, reuse_address=True
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        await self._close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, RuntimeError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            writer.transport.abort()
            up_writer.transport.abort()


class SmtpRelay(Outages):
    """An SMTP server in front of the real one: relays each envelope unchanged, except that it
    refuses `refused` recipients for good (550) and defers everything (451) while told to."""

    def __init__(self, port: int, upstream_port: int, refused: set[str]) -> None:
        super().__init__("smtp")
        self.port = port
        self._upstream_port = upstream_port
        self._refused = {address.casefold() for address in refused}
        self._server: asyncio.Server | None = None
        self._protocols: set[SMTP] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.deferring = False
        self.deferrals = 0
        self.refusals = 0
        self.relayed = 0

    async def start(self) -> None:
        await self._listen()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return TrackedSMTP(
                self,
                self._protocols,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname="relay.localhost",
                loop=loop,
            )

        self._server = await loop.create_server(factory, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.abort()  # type: ignore[attr-defined]

    async def stop(self) -> None:
        await self._close()

    async def deferral(self, seconds: float) -> None:
        """Answer 451 to every message for a while."""
        self.deferring = True
        await asyncio.sleep(seconds)
        self.deferring = False

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.casefold() in self._refused:
            self.refusals += 1
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.deferring:
            self.deferrals += 1
            return "451 4.3.0 try again later"
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=self._upstream_port, timeout=10)
        try:
            await client.connect()
            await client.sendmail(envelope.mail_from or "", envelope.rcpt_tos, content)
        except (aiosmtplib.SMTPException, OSError):
            client.close()
            return "451 4.4.1 next hop unavailable"
        except BaseException:  # cut off mid-relay: the next hop gets no end of data
            client.close()
            raise
        # Answer at once: the next hop has the message, so a QUIT must not stand between.
        closing = asyncio.create_task(self._quit(client))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        self.relayed += 1
        return "250 OK"

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()
        client.close()


def arrivals(maildir: Path, header: str) -> dict[str, list[float]]:
    """When each message reached a mailbox (from its maildir file name), by a header's value."""
    found: dict[str, list[float]] = {}
    for path in [*maildir.glob("new/*"), *maildir.glob("cur/*")]:
        seconds, _, rest = path.name.partition(".M")
        micros = rest.split("P", 1)[0]
        value = str(message_from_bytes(path.read_bytes(), policy=default)[header])
        found.setdefault(value, []).append(int(seconds) + int(micros) / 1e6)
    return {value: sorted(times) for value, times in found.items()}


async def at(moment: float, start: float, action: Callable[[], Any]) -> Any:
    """Run `action` (a coroutine function) `moment` seconds after `start` (monotonic)."""
    await asyncio.sleep(max(0.0, start + moment - time.monotonic()))
    return await action()

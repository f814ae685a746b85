"""The local mail server: IMAP (pymap) and SMTP (aiosmtpd) on loopback, in-process or on a
thread of its own."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.sock import SocketInfo
from pymap.backend.maildir import Identity, Login, MaildirBackend
from pymap.backend.maildir.layout import MaildirLayout
from pymap.backend.maildir.mailbox import Maildir as PymapMaildir
from pymap.concurrent import Subsystem
from pymap.exceptions import UserNotFound
from pymap.frozen import frozendict
from pymap.imap import IMAPServer
from pymap.user import Passwords, UserMetadata
from pysasl.hashing import BuiltinHash

from devtools.localmail.maildir import (
    DEFAULT_KEYWORDS,
    KEYWORD_PATTERN,
    MAILDIR_LAYOUT,
    MAX_KEYWORDS,
    LocalConfig,
    LocalLogin,
    TokenCheck,
    coalescing,
    merge_keywords,
    patch_pymap,
    pymap_args,
)
from devtools.localmail.smtp import (
    IDENT,
    MAX_MESSAGE_SIZE,
    SERVER_NAME,
    DeliveryHandler,
    TrackedSMTP,
    XOAuth2DeliveryHandler,
)
from devtools.localmail.users import (
    PASSWORD_HASH_ROUNDS,
    MailUser,
    UnknownMailboxError,
    existing_user_names,
    maildir_safe,
    strip_angle,
)

_log = logging.getLogger("devtools.localmail")


class LocalMailServer:
    """IMAP (pymap, maildir backend) plus SMTP (aiosmtpd) on loopback, in-process.

    Both listeners run on the event loop that calls :meth:`start`. Users are
    (re)created on every start: the configured list is authoritative for logins
    (users from earlier runs that are no longer configured lose their login but
    keep their mail on disk), passwords are re-hashed, and existing mail and
    UIDVALIDITY values are untouched.

    Args:
        data_dir: Directory holding the user database and the maildirs.
        users: The mailboxes to serve.
        host: Interface both listeners bind to.
        imap_port: IMAP port.
        smtp_port: SMTP port.
        keywords: IMAP keywords (user flags) that every mailbox can store. pymap's
            maildir backend only persists keywords from a per-mailbox table of
            at most 26; they are added to (never renumbered in) each mailbox's
            ``dovecot-keywords`` at start, and copied into folders made by CREATE.
        tls: A server-side TLS context (certificate and key loaded). Without
            ``implicit_tls`` both listeners offer STARTTLS, and IMAP refuses a
            login before it; SMTP then offers AUTH only after it.
        implicit_tls: Both listeners speak TLS from the first byte (IMAPS, SMTPS).
        xoauth2: A token check; when given, IMAP and SMTP also accept XOAUTH2
            logins whose access token it approves.
        catch_all: The address of one of `users` whose INBOX takes SMTP mail for every
            address that has no mailbox here, with an ``X-Original-To:`` line naming those
            addresses (as development mail servers such as Mailpit keep all mail). Without
            it such a recipient is refused with 550.
    """

    def __init__(
        self,
        data_dir: Path,
        users: Sequence[MailUser],
        *,
        host: str = "127.0.0.1",
        imap_port: int = 1143,
        smtp_port: int = 1025,
        keywords: Sequence[str] = DEFAULT_KEYWORDS,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        xoauth2: TokenCheck | None = None,
        catch_all: str | None = None,
    ) -> None:
        if not users:
            raise ValueError("at least one MailUser is required")
        by_address: dict[str, MailUser] = {}
        for user in users:
            key = user.address.casefold()
            if key in by_address:
                raise ValueError(f"duplicate mailbox address: {user.address!r}")
            by_address[key] = user
        self.data_dir: Final = Path(data_dir)
        self.users: Final = tuple(users)
        self.host: Final = host
        self.imap_port: Final = imap_port
        self.smtp_port: Final = smtp_port
        self._by_address = by_address
        for keyword in keywords:
            if not KEYWORD_PATTERN.fullmatch(keyword):
                raise ValueError(f"not a usable IMAP keyword: {keyword!r}")
        if len(set(keywords)) > MAX_KEYWORDS:
            raise ValueError(f"at most {MAX_KEYWORDS} keywords are supported")
        self.keywords: Final = tuple(dict.fromkeys(keywords))
        self._counter = itertools.count()
        self._counter_lock = threading.Lock()
        self._hostname = maildir_safe(socket.gethostname() or "localhost")
        self._running = False
        self._io_executor: ThreadPoolExecutor | None = None
        self._cpu_executor: ThreadPoolExecutor | None = None
        self._imap_server: asyncio.AbstractServer | None = None
        self._smtp_server: asyncio.AbstractServer | None = None
        self._imap_tasks: set[asyncio.Task[Any]] = set()
        self._imap_writers: set[asyncio.StreamWriter] = set()
        self._smtp_protocols: set[SMTP] = set()
        self._stack = AsyncExitStack()
        self.tls: Final = tls
        self.implicit_tls: Final = implicit_tls and tls is not None
        self.xoauth2: Final = xoauth2
        if catch_all is not None and catch_all.casefold() not in by_address:
            raise ValueError(f"the catch-all mailbox {catch_all!r} is not one of the users")
        self.catch_all: Final = catch_all

    # -- public API -----------------------------------------------------

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._running

    def user_for(self, address: str) -> MailUser | None:
        """The configured user whose address matches ``address`` (case-insensitive)."""
        return self._by_address.get(strip_angle(address).casefold())

    def mailbox_for(self, address: str) -> MailUser | None:
        """Where SMTP delivers mail for `address`: its user's mailbox, else the catch-all."""
        user = self.user_for(address)
        if user is None and self.catch_all is not None:
            return self.user_for(self.catch_all)
        return user

    def maildir_path(self, address: str) -> Path:
        """The INBOX maildir directory of the user with this address."""
        user = self.user_for(address)
        if user is None:
            raise UnknownMailboxError(address)
        return self.data_dir / user.address

    async def start(self) -> None:
        """Create the users and start the IMAP and SMTP listeners."""
        if self._running:
            raise RuntimeError("LocalMailServer already started")
        patch_pymap()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for user in self.users:
            self._prepare_mailboxes(self.data_dir / user.address)
        self._io_executor = ThreadPoolExecutor(
            max_workers=8, thread_name_prefix="localmail-imap-io"
        )
        self._cpu_executor = ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="localmail-imap-cpu"
        )
        try:
            args = pymap_args(self.data_dir, self.host, self.imap_port)
            config = LocalConfig(
                args,
                host=self.host,
                port=self.imap_port,
                debug=False,
                tls_enabled=self.tls is not None and not self.implicit_tls,
                ssl_context=self.tls,
                cert_file=None,
                key_file=None,
                base_dir=str(self.data_dir),
                layout=MAILDIR_LAYOUT,
                colon=args.colon,
                subsystem=Subsystem.for_threading(self._io_executor),
                cpu_subsystem=Subsystem.for_threading(self._cpu_executor),
                hash_context=BuiltinHash(rounds=PASSWORD_HASH_ROUNDS),
                reject_dnsbl=False,
            )
            config.xoauth2 = self.xoauth2
            login = LocalLogin(config)
            backend = MaildirBackend(login, config)
            # pymap finds its concurrency subsystem in a context variable. Give
            # the listener its own copy of the context so that several servers
            # (or the caller) never see each other's settings.
            ctx = contextvars.copy_context()
            ctx.run(config.apply_context)
            await asyncio.create_task(self._start_servers(backend, config), context=ctx)
        except BaseException:
            await self._shutdown()
            raise
        self._running = True
        _log.info(
            "localmail started imap=%s:%d smtp=%s:%d data_dir=%s users=%s",
            self.host,
            self.imap_port,
            self.host,
            self.smtp_port,
            self.data_dir,
            ", ".join(u.address for u in self.users),
        )

    async def stop(self) -> None:
        """Stop both listeners, drop open connections and release worker threads."""
        if not self._running:
            return
        self._running = False
        await self._shutdown()
        _log.info("localmail stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def deliver(self, recipient: str, raw: bytes) -> None:
        """Deliver ``raw`` verbatim into ``recipient``'s INBOX (blocking file I/O).

        This is the path SMTP delivery takes too (the SMTP handler adds the trace
        headers first). The message is written to ``tmp/``, flushed to disk and
        renamed into ``new/``; pymap gives it a UID the next time the mailbox is
        selected, polled (NOOP and any other command on the selected mailbox) or
        inspected with STATUS. It works whether or not the server is running.

        Raises:
            UnknownMailboxError: No configured user has this address.
        """
        maildir = self.maildir_path(recipient)
        self._ensure_maildir(maildir)
        name = self._unique_name()
        tmp_path = maildir / "tmp" / name
        try:
            with open(tmp_path, "xb") as fp:
                fp.write(raw)
                fp.flush()
                os.fsync(fp.fileno())
            os.rename(tmp_path, maildir / "new" / name)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise

    # -- internals ------------------------------------------------------

    async def _start_servers(self, backend: MaildirBackend, config: LocalConfig) -> None:
        """Runs inside the pymap context: users, then the IMAP and SMTP listeners."""
        await self._sync_users(backend.login, config)
        await backend.start(self._stack)

        imap_server = IMAPServer(backend.login, config)

        async def imap_connection(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sock_info: SocketInfo
        ) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._imap_tasks.add(task)
            self._imap_writers.add(writer)
            try:
                await imap_server(reader, coalescing(writer), sock_info)
            except Exception:
                _log.exception("IMAP connection failed")
            finally:
                self._imap_writers.discard(writer)
                if task is not None:
                    self._imap_tasks.discard(task)

        pp_reader = ProxyProtocolReader(config.proxy_protocol)
        self._imap_server = await asyncio.start_server(
            pp_reader.get_callback(imap_connection),
            host=self.host,
            port=self.imap_port,
            reuse_address=True,
            ssl=self.tls if self.implicit_tls else None,
        )

        loop = asyncio.get_running_loop()
        handler: DeliveryHandler = (
            DeliveryHandler(self) if self.xoauth2 is None else XOAuth2DeliveryHandler(self)
        )
        logins = self.tls is not None or self.xoauth2 is not None

        def smtp_factory() -> SMTP:
            protocol = TrackedSMTP(
                handler,
                self._smtp_protocols,
                data_size_limit=MAX_MESSAGE_SIZE,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=SERVER_NAME,
                ident=IDENT,
                loop=loop,
                tls_context=None if self.implicit_tls else self.tls,
                auth_require_tls=self.tls is not None and not self.implicit_tls,
                authenticator=self._check_password if logins else None,
            )
            return protocol

        self._smtp_server = await loop.create_server(
            smtp_factory,
            host=self.host,
            port=self.smtp_port,
            reuse_address=True,
            ssl=self.tls if self.implicit_tls else None,
        )

    def _check_password(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """SMTP AUTH PLAIN and LOGIN against the configured users."""
        if isinstance(data, LoginPassword):
            user = self.user_for(data.login.decode(errors="replace"))
            if user is not None and data.password.decode(errors="replace") == user.password:
                return AuthResult(success=True, auth_data=user.address)
        return AuthResult(success=False, handled=False)

    async def _sync_users(self, login: Login, config: LocalConfig) -> None:
        """Make the pymap user database match the configured users."""
        passwords = Passwords(config)
        configured = {user.address for user in self.users}
        admin = frozenset({"admin"})
        for user in self.users:
            hashed = await passwords.hash_password(user.password)
            metadata = UserMetadata(
                config,
                user.address,
                password=hashed,
                params=frozendict({"mailbox_path": user.address}),
            )
            await Identity(config, login.tokens, user.address, None, admin).set(metadata)
        for name in existing_user_names(self.data_dir):
            if name not in configured:
                with suppress(UserNotFound):
                    await Identity(config, login.tokens, name, None, admin).delete()
                _log.info("removed login of unconfigured user %s (mail kept)", name)

    async def _shutdown(self) -> None:
        servers = [s for s in (self._imap_server, self._smtp_server) if s is not None]
        self._imap_server = self._smtp_server = None
        for server in servers:
            server.close()
        for protocol in list(self._smtp_protocols):
            if protocol.transport is not None:
                protocol.transport.close()
        for writer in list(self._imap_writers):
            writer.transport.abort()
        tasks = list(self._imap_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        # Let aiosmtpd's connection_lost callbacks run.
        await asyncio.sleep(0)
        executors = [e for e in (self._io_executor, self._cpu_executor) if e is not None]
        self._io_executor = self._cpu_executor = None
        for executor in executors:
            # Wait so that in-flight maildir writes finish before a restart.
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        stack, self._stack = self._stack, AsyncExitStack()
        await stack.aclose()

    def _prepare_mailboxes(self, inbox: Path) -> None:
        """Create the INBOX maildir and give every mailbox the keyword table."""
        self._ensure_maildir(inbox)
        merge_keywords(inbox, self.keywords)
        layout = MaildirLayout.get(str(inbox), MAILDIR_LAYOUT, PymapMaildir)
        for folder in layout.list_folders("/"):
            merge_keywords(Path(layout.get_path(folder, "/")), self.keywords)

    def _ensure_maildir(self, path: Path) -> None:
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    def _unique_name(self) -> str:
        now = time.time()
        with self._counter_lock:
            seq = next(self._counter)
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        return f"{seconds}.M{micros:06d}P{os.getpid()}Q{seq}R{os.urandom(4).hex()}.{self._hostname}"


class MailServerThread:
    """Runs a :class:`LocalMailServer` on an event loop of its own, in a thread.

    pymap does some work on its event loop synchronously (re-reading a folder, parsing an
    odd message); on a loop of its own that never stalls the caller's loop — a worker's,
    a test's.
    """

    def __init__(self, server: LocalMailServer) -> None:
        self.server: Final = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    def start(self, timeout: float = 30.0) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._stopped.wait()
            finally:
                await self.server.stop()

        self._thread = threading.Thread(
            target=asyncio.run, args=(serve(),), name="localmail", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("the local mail server did not start in time")
        if failure:
            raise failure[0]

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stopped is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout)
        self._loop = self._thread = self._stopped = None

    def deliver(self, recipient: str, raw: bytes) -> None:
        self.server.deliver(recipient, raw)

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

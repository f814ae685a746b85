"""A company mail server on loopback: Dovecot (IMAP, LMTP) and Postfix (SMTP) from Debian packages.

`install()` puts the packages on the machine without starting their system services;
`CompanyMail(directory, ports, users).start()` runs one Dovecot/Postfix pair entirely under
`directory` (configuration from the templates beside this file, queue, logs, mail), and `stop()`
ends both. Nothing outside `directory` is changed. Standard library only: `.ci/run` calls
`python3 -m devtools.companymail.stack install` before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import hashlib
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from types import TracebackType
from typing import Final, Self

from devtools import debian

HERE: Final = Path(__file__).resolve().parent
PACKAGES: Final = ("dovecot-imapd", "dovecot-lmtpd", "postfix")
DOMAINS: Final = ("example.com", "example.org", "example.net")
_SYSTEM_PIDFILES: Final = (
    Path("/run/dovecot/master.pid"),
    Path("/var/spool/postfix/pid/master.pid"),
)
_START_TIMEOUT: Final = 30.0
_OWNER: Final = "owner.pid"
_QUEUES: Final = ("maildrop", "incoming", "active", "deferred", "hold")


class CompanyMailError(RuntimeError):
    """The company mail stack cannot be installed, started or used."""


@dataclass(frozen=True)
class Ports:
    imap: int
    smtp: int
    lmtp: int


@dataclass(frozen=True)
class User:
    address: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        local, at, domain = self.address.rpartition("@")
        if not (local and at and domain) or any(c in self.address for c in ":/\n\0 "):
            raise CompanyMailError(f"not a usable mailbox address: {self.address!r}")
        if not self.password or any(c in self.password for c in ":\n\0"):
            raise CompanyMailError(f"{self.address}: password empty or with ':' or a newline")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- installation --------------------------------------------------------------------------


def installed() -> bool:
    """Whether all three packages are installed (dpkg's view)."""
    return debian.installed(PACKAGES)


def unavailable_reason() -> str | None:
    """Why the stack cannot run on this machine, or None when it can."""
    if installed():
        return None if os.geteuid() == 0 else "Dovecot and Postfix need root to start"
    if os.geteuid() != 0:
        return f"{', '.join(PACKAGES)} are not installed and installing them needs root"
    if not shutil.which("apt-get"):
        return f"{', '.join(PACKAGES)} are not installed and there is no apt-get"
    return (
        f"{', '.join(PACKAGES)} are not installed "
        "(run: python3 -m devtools.companymail.stack install)"
    )


def install() -> None:
    """Install the packages with apt-get (idempotent), their system services neither started
    nor left running on the standard ports."""
    if installed():
        return
    if os.geteuid() != 0:
        raise CompanyMailError(f"installing {', '.join(PACKAGES)} needs root")
    if not shutil.which("apt-get"):
        raise CompanyMailError(f"installing {', '.join(PACKAGES)} needs apt-get (Debian)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["debconf-set-selections"],
        input=b"postfix postfix/main_mailer_type select No configuration\n"
        b"postfix postfix/mailname string mail.example.com\n",
        env=env,
        check=True,
    )
    try:
        debian.apt_install(PACKAGES)
    except debian.InstallError as exc:
        raise CompanyMailError(str(exc)) from None
    _stop_system_services()


def _stop_system_services() -> None:
    """Keep the packages' own services off: disabled under systemd, and stopped if running."""
    if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
        subprocess.run(
            ["systemctl", "disable", "--now", "dovecot.service", "postfix.service"],
            capture_output=True,
            check=False,
        )
    for pidfile in _SYSTEM_PIDFILES:
        pid = _read_pid(pidfile)
        if pid is not None:
            _terminate([pid])


# -- a running stack -------------------------------------------------------------------------


class CompanyMail:
    """One Dovecot and one Postfix, everything under `directory`.

    Each user's mailbox lives under `directory/mailboxes/<set>/`; `new_mailboxes(name)` points
    every user at a fresh, empty set (Dovecot re-reads its passwd-file on change), so tests can
    share one running pair and still start from empty mailboxes.
    """

    def __init__(
        self,
        directory: Path,
        ports: Ports,
        users: Sequence[User],
        domains: Sequence[str] = DOMAINS,
    ) -> None:
        self.directory: Final = directory.resolve()
        self.ports: Final = ports
        self.users: Final = {user.address.lower(): user for user in users}
        self.domains: Final = tuple(domains)
        outside = [a for a in self.users if a.rpartition("@")[2] not in self.domains]
        if outside:
            raise CompanyMailError(f"users outside the domains {self.domains}: {outside}")
        self.instance: Final = (
            "companymail-" + hashlib.sha256(str(self.directory).encode()).hexdigest()[:10]
        )
        self.dovecot_conf: Final = self.directory / "dovecot" / "dovecot.conf"
        self.users_file: Final = self.directory / "dovecot" / "users"
        self.postfix_dir: Final = self.directory / "postfix"
        self.log_dir: Final = self.directory / "log"
        self._base_dir: Final = self.directory / "run"
        self._queue_dir: Final = self.directory / "queue"
        self._mail = pwd.getpwnam("mail")
        self._running = False

    # lifecycle

    def start(self) -> Self:
        reason = unavailable_reason()
        if reason is not None:
            raise CompanyMailError(reason)
        self._write_config()
        (self.directory / _OWNER).write_text(f"{os.getpid()}\n")
        self.new_mailboxes("initial")
        try:
            self._run(["dovecot", "-c", str(self.dovecot_conf)], "dovecot")
            self._running = True
            _wait_for_port(self.ports.imap, "Dovecot IMAP", self._log_tail)
            _wait_for_port(self.ports.lmtp, "Dovecot LMTP", self._log_tail)
            self._run(["postfix", "-c", str(self.postfix_dir), "start"], "postfix")
            _wait_for_port(self.ports.smtp, "Postfix SMTP", self._log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both (orderly, then by force); afterwards none of their processes is left."""
        stop_directory(self.directory)
        self._running = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # mailboxes and mail

    def new_mailboxes(self, name: str) -> Path:
        """Point every user at a new, empty mailbox under `mailboxes/<name>`; returns its root.

        Mail still in Postfix's queue is delivered first (or, after a while, dropped), so none
        of it lands in the new mailboxes."""
        if self._running:
            self.drain_queue()
        root = self.directory / "mailboxes" / name
        root.mkdir(parents=True, exist_ok=False)
        os.chown(root, self._mail.pw_uid, self._mail.pw_gid)
        uid, gid = self._mail.pw_uid, self._mail.pw_gid
        lines = [
            f"{address}:{{PLAIN}}{user.password}:{uid}:{gid}::{root / address}::"
            for address, user in sorted(self.users.items())
        ]
        # Dovecot re-reads a passwd-file whose mtime (in whole seconds) or size changed, and
        # looks at it at most once a second: the new homes are waited for.
        before = self.users_file.stat().st_mtime if self.users_file.exists() else 0.0
        _write_atomically(self.users_file, "\n".join(lines) + "\n", mode=0o640)
        os.chown(self.users_file, 0, grp.getgrnam("dovecot").gr_gid)
        stamp = max(time.time(), int(before) + 1.0)
        os.utime(self.users_file, (stamp, stamp))
        if self._running and self.users:
            self._wait_for_home(min(self.users), root)
        return root

    def _wait_for_home(self, address: str, root: Path, timeout: float = 10.0) -> None:
        command = ["doveadm", "-c", str(self.dovecot_conf), "user", "-f", "home", address]
        deadline = time.monotonic() + timeout
        while True:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.stdout.strip() == str(root / address):
                return
            if time.monotonic() > deadline:
                raise CompanyMailError(
                    f"Dovecot does not take up the new mailboxes: {result.stdout or result.stderr}"
                )
            time.sleep(0.1)

    def queued(self) -> int:
        """Messages in Postfix's queue (received, not yet handed to Dovecot)."""
        return sum(
            1
            for part in _QUEUES
            if (self._queue_dir / part).is_dir()
            for entry in (self._queue_dir / part).rglob("*")
            if entry.is_file()
        )

    def wait_for_queue(self, timeout: float = 30.0) -> bool:
        """Wait until Postfix has handed all it accepted to Dovecot; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def drain_queue(self, timeout: float = 10.0) -> None:
        """Wait for Postfix's queue to empty; what is still there after `timeout` is deleted."""
        if not self.wait_for_queue(timeout):
            subprocess.run(
                ["postsuper", "-c", str(self.postfix_dir), "-d", "ALL"],
                capture_output=True,
                check=False,
            )

    def deliver(self, recipient: str, raw: bytes) -> None:
        """Put `raw` into `recipient`'s INBOX as it is (IMAP APPEND, no headers added)."""
        user = self.users.get(recipient.lower())
        if user is None:
            raise CompanyMailError(f"no mailbox for {recipient!r}")
        with imaplib.IMAP4("127.0.0.1", self.ports.imap, timeout=30) as imap:
            imap.login(user.address, user.password)
            status, data = imap.append("INBOX", "", None, raw)
            if status != "OK":
                raise CompanyMailError(f"APPEND to {recipient}'s INBOX refused: {data!r}")

    # internals

    def _write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in (self.directory, self.log_dir, self.directory / "mailboxes"):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
        self.dovecot_conf.parent.mkdir(mode=0o755, exist_ok=True)
        self.postfix_dir.mkdir(mode=0o755, exist_ok=True)
        self._queue_dir.mkdir(mode=0o755, exist_ok=True)
        data_dir = self.directory / "postfix-data"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        postfix = pwd.getpwnam("postfix")
        os.chown(data_dir, postfix.pw_uid, postfix.pw_gid)
        values = {
            "instance": self.instance,
            "base_dir": str(self._base_dir),
            "state_dir": str(self.directory / "state"),
            "log_dir": str(self.log_dir),
            "users_file": str(self.users_file),
            "mail_uid": str(self._mail.pw_uid),
            "mail_gid": str(self._mail.pw_gid),
            "imap_port": str(self.ports.imap),
            "lmtp_port": str(self.ports.lmtp),
            "smtp_port": str(self.ports.smtp),
            "config_dir": str(self.postfix_dir),
            "queue_dir": str(self._queue_dir),
            "data_dir": str(data_dir),
            "domains": ", ".join(self.domains),
        }
        _render(HERE / "dovecot.conf", self.dovecot_conf, values)
        _render(HERE / "main.cf", self.postfix_dir / "main.cf", values)
        _render(HERE / "master.cf", self.postfix_dir / "master.cf", values)
        recipients = "".join(f"{address} OK\n" for address in sorted(self.users))
        _write_atomically(self.postfix_dir / "recipients", recipients, mode=0o644)

    def _run(self, command: list[str], name: str) -> None:
        # The daemon inherits stdout and stderr: a file, not a pipe that would never close.
        with (self.log_dir / f"{name}.start.log").open("w+") as output:
            code = subprocess.call(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
            output.seek(0)
            said = output.read().strip()
        if code != 0:
            raise CompanyMailError(
                f"{name} did not start (exit {code}): {said}\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        tails = []
        for log in sorted(self.log_dir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            tails.append(f"--- {log}\n" + "\n".join(lines))
        return "\n".join(tails)


def stop_directory(directory: Path) -> None:
    """Stop the Dovecot and Postfix that run under `directory`, if any."""
    pidfiles = (directory / "queue" / "pid" / "master.pid", directory / "run" / "master.pid")
    _terminate([pid for pid in map(_read_pid, pidfiles) if pid is not None])


def stop_abandoned(parent: Path, prefix: str) -> list[Path]:
    """Stop and remove the stacks under `parent`/`prefix`* whose starting process is gone
    (it was killed before it could stop them); returns their directories."""
    abandoned = []
    for directory in sorted(parent.glob(f"{prefix}*")):
        owner = _read_pid(directory / _OWNER)
        if owner is None or is_running(owner):
            continue
        stop_directory(directory)
        shutil.rmtree(directory, ignore_errors=True)
        abandoned.append(directory)
    return abandoned


def _render(template: Path, target: Path, values: dict[str, str]) -> None:
    _write_atomically(target, Template(template.read_text()).substitute(values), mode=0o644)


def _write_atomically(path: Path, text: str, *, mode: int) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
        tmp.write(text)
    os.chmod(tmp.name, mode)
    os.replace(tmp.name, path)


def _wait_for_port(port: int, what: str, log_tail: Callable[[], str]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.settimeout(5)
                if sock.recv(100):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise CompanyMailError(f"{what} not answering on 127.0.0.1:{port}\n{log_tail()}")
        time.sleep(0.1)


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def process_family(pids: Iterable[int]) -> set[int]:
    """`pids` and every process below them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = {pid for pid in pids if pid in parents}
    grew = True
    while grew:
        more = {child for child, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found


def _terminate(masters: Sequence[int], timeout: float = 5.0) -> None:
    """SIGTERM to each master process, then to whatever of its children outlives it; what is
    left after that gets SIGKILL."""
    family = process_family(masters)
    for group, signum in ((masters, signal.SIGTERM), (family, signal.SIGTERM)):
        for pid in group:
            if is_running(pid):
                _signal(pid, signum)
        deadline = time.monotonic() + timeout
        while any(is_running(pid) for pid in group) and time.monotonic() < deadline:
            time.sleep(0.05)
    for pid in family:
        if is_running(pid):
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m devtools.companymail.stack",
        description="Dovecot + Postfix on loopback for ace-email's tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install the Debian packages (idempotent; root)")
    commands.add_parser("check", help="say whether the stack can run here")
    run = commands.add_parser("run", help="run a stack in DIRECTORY until interrupted")
    run.add_argument("directory", type=Path)
    run.add_argument("--user", action="append", default=[], metavar="ADDRESS:PASSWORD")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
            print("companymail: dovecot-imapd, dovecot-lmtpd and postfix are installed")
        elif args.command == "check":
            reason = unavailable_reason()
            print(reason or "companymail: ready")
            return 0 if reason is None else 1
        else:
            users = [User(*spec.split(":", 1)) for spec in args.user]
            ports = Ports(imap=free_port(), smtp=free_port(), lmtp=free_port())
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            with CompanyMail(args.directory, ports, users):
                print(f"companymail ready imap={ports.imap} smtp={ports.smtp}", flush=True)
                signal.sigwait(stop)
    except (CompanyMailError, subprocess.CalledProcessError, OSError) as exc:
        print(f"companymail: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

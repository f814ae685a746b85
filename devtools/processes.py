"""The local stack's processes: its ports, the record of a running stack in its data folder,
and what is left of one that was killed.

`dev.py run` writes `stack.json` into its data folder while it runs: its own pid and that of
the Temporal dev server it started. A later start reads it: a stack still running is named
(how to stop it, how to run another beside it); a Temporal dev server left by a stack that
was killed is stopped. A port taken by anything else is named with the process that holds it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD = "stack.json"
DEFAULT_DATA_DIR = Path(".data")
CATCH_ALL = "catch-all@localhost"  # the local mail server's mailbox for every other address
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class DevPorts:
    """The loopback ports of one local stack; a second stack adds an offset to each."""

    temporal: int = 7233
    ui: int = 8233
    imap: int = 1143
    smtp: int = 1025
    codec: int = 8081
    intake: int = 8082
    desk: int = 8080

    @classmethod
    def with_offset(cls, offset: int) -> DevPorts:
        base = cls()
        ports = {name: port + offset for name, port in asdict(base).items()}
        bad = {name: port for name, port in ports.items() if not 1024 <= port <= 65535}
        if bad:
            raise ValueError(
                f"--port-offset {offset} puts {', '.join(f'{n} on {p}' for n, p in bad.items())}"
                " outside 1024-65535"
            )
        return cls(**ports)

    def named(self) -> dict[str, int]:
        return {
            "Temporal": self.temporal,
            "the Temporal Web UI": self.ui,
            "IMAP": self.imap,
            "SMTP": self.smtp,
            "the codec server": self.codec,
            "the work-item intake": self.intake,
            "the desk": self.desk,
        }


class StackInUse(Exception):
    """Another stack, or another program, holds what this one needs; the message says what
    and how to go on."""


@dataclass(frozen=True)
class StackRecord:
    pid: int
    temporal_pid: int | None
    ports: DevPorts

    @classmethod
    def read(cls, data_dir: Path) -> StackRecord | None:
        try:
            raw = json.loads((data_dir / RECORD).read_text(encoding="utf-8"))
            return cls(int(raw["pid"]), raw.get("temporal_pid"), DevPorts(**raw["ports"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, data_dir: Path) -> None:
        document = {"pid": self.pid, "temporal_pid": self.temporal_pid, "ports": asdict(self.ports)}
        path = data_dir / RECORD
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document) + "\n", encoding="utf-8")
        temporary.replace(path)


def forget(data_dir: Path) -> None:
    (data_dir / RECORD).unlink(missing_ok=True)


def clear_the_way(data_dir: Path, ports: DevPorts, again: str) -> list[str]:
    """Stop what a killed stack of this data folder left; raise StackInUse where a running
    stack or another program holds what this one needs. Returns what was cleaned up."""
    cleaned: list[str] = []
    record = StackRecord.read(data_dir)
    if record is not None:
        if _is_stack(record.pid):
            raise StackInUse(
                f"ace-email is already running from {data_dir} (pid {record.pid}); stop it "
                f"with Ctrl-C in its terminal or `kill {record.pid}`, or run another beside it "
                f"with {again}"
            )
        temporal = record.temporal_pid
        if temporal and _is_temporal_of(temporal, data_dir):
            stop_process(temporal)
            cleaned.append(
                f"stopped the Temporal dev server (pid {temporal}) left running by an earlier "
                f"stack that was killed (pid {record.pid})"
            )
        forget(data_dir)
    for what, port in ports.named().items():
        if port_open(port):
            owner = port_owner(port)
            held = f" by pid {owner[0]} ({owner[1]})" if owner else ""
            raise StackInUse(
                f"port {port} on 127.0.0.1, for {what}, is in use{held}; stop that, or run "
                f"this stack beside it with {again}"
            )
    return cleaned


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(pid: int, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    with suppress(ProcessLookupError):  # it ended by itself meanwhile
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with suppress(ProcessLookupError):  # it ended by itself meanwhile
        os.kill(pid, signal.SIGKILL)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has Linux send the child SIGTERM when this process dies, however
    it dies (even SIGKILL); None where the system cannot."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        prctl = ctypes.CDLL(name, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return set_death_signal


def port_owner(port: int) -> tuple[int, str] | None:
    """The pid and command line of the process listening on a loopback TCP port (Linux
    /proc; None where it cannot be told)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    command = _command_line(int(entry.name)) or "?"
                    return int(entry.name), command if len(command) <= 120 else command[
                        :117
                    ] + "..."
        except OSError:
            continue
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(w.decode(errors="replace") for w in raw.rstrip(b"\0").split(b"\0"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _is_stack(pid: int) -> bool:
    return pid != os.getpid() and _alive(pid) and "devtools.stack" in _command_line(pid)


def _is_temporal_of(pid: int, data_dir: Path) -> bool:
    command = _command_line(pid)
    return _alive(pid) and "start-dev" in command and str(data_dir / "temporal.db") in command

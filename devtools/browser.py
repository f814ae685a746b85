"""Debian's Chromium for the tests of the desk in a real browser (driven by Playwright, which
cannot download its own browser here).

    python3 -m devtools.browser install     chromium, with apt-get (as root; idempotent)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Final

from devtools.debian import InstallError, apt_install

PACKAGES: Final = ("chromium",)
CHROMIUM: Final = Path("/usr/bin/chromium")


def unavailable_reason() -> str | None:
    if CHROMIUM.exists():
        return None
    if not shutil.which("apt-get"):
        return "chromium is not installed and there is no apt-get"
    return "chromium is not installed (run: python3 -m devtools.browser install)"


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        apt_install(PACKAGES)
    except (InstallError, OSError) as exc:
        print(f"devtools.browser install: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The local server's mailboxes: who may log in, and how addresses map to maildirs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: PBKDF2 rounds for the stored password hashes. This is a loopback demo server,
#: so a cheap hash keeps a fresh IMAP login fast (pymap's default is 500 000).
PASSWORD_HASH_ROUNDS: Final = 1000


@dataclass(frozen=True)
class MailUser:
    """A mailbox on the local server.

    Attributes:
        address: The email address, e.g. ``support@example.com``; it is also the
            IMAP login name and the name of the user's maildir directory.
        password: The IMAP password.
    """

    address: str
    password: str

    def __post_init__(self) -> None:
        address = self.address
        local, at, domain = address.rpartition("@")
        if (
            not at
            or not local
            or not domain
            or address.startswith(".")
            or any(ch in address for ch in "/\\:\0")
            or any(ch.isspace() or ord(ch) < 0x20 for ch in address)
        ):
            raise ValueError(f"not a usable mailbox address: {address!r}")
        if not self.password:
            raise ValueError(f"empty password for {address!r}")

    def __repr__(self) -> str:
        return f"MailUser(address={self.address!r}, password='***')"


class UnknownMailboxError(LookupError):
    """Raised by :meth:`LocalMailServer.deliver` for an address with no mailbox."""


def existing_user_names(data_dir: Path) -> list[str]:
    """Names in pymap's passwd file (read directly: pymap has no list API)."""
    try:
        text = (data_dir / "pymap-etc-passwd").read_text()
    except FileNotFoundError:
        return []
    names: list[str] = []
    for line in text.splitlines():
        if not line:
            continue
        name = ""
        escaped = False
        for ch in line:
            if escaped:
                name += ch
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == ":":
                break
            else:
                name += ch
        names.append(name)
    return names


def strip_angle(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


def maildir_safe(name: str) -> str:
    return name.replace("/", "\\057").replace(":", "\\072")


# -- CLI --------------------------------------------------------------------


def parse_user(spec: str) -> MailUser:
    address, sep, password = spec.partition(":")
    if not sep:
        # Do not echo the value: it may be a password given without its address.
        raise ValueError("expected ADDRESS:PASSWORD (no ':' found)")
    return MailUser(address.strip(), password)


def read_users_file(path: Path) -> list[MailUser]:
    users: list[MailUser] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            users.append(parse_user(stripped))
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
    return users

"""What every section of the configuration shares: its error, the strictness of its tables, and
the value types they use."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _email_address(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an email address")
    return value


EmailAddress = Annotated[str, AfterValidator(_email_address)]


def _readable(path: Path) -> Path:
    """A file the configuration names is read when it loads, so that a missing password or
    key file stops every process at its start, with the key named, not at its first use."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot read {path}: {reason}") from None
    return path


ReadableFile = Annotated[Path, AfterValidator(_readable)]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the fault."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def is_loopback(host: str) -> bool:
    """Loopback hosts may be reached without TLS: nothing leaves the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Where a secret of the configuration comes from, one way for all: a value `NAME` given
inline, an environment variable named by `NAME_env`, or a file named by `NAME_file`, at most
one of them. It is read when it is used, so a rotated file or variable takes effect without a
restart; a fault names the key, never the value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from ace_email.config.base import ConfigError


def sources_given(section: BaseModel, name: str) -> list[str]:
    """Which of `name`, `name_env`, `name_file` the section gives; ValueError for more than one."""
    given = [
        field
        for field in (name, f"{name}_env", f"{name}_file")
        if _field(section, field) is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give only one of {name}, {name}_env, {name}_file, not {given}")
    return given


def read_secret(section: BaseModel, name: str, where: str = "") -> str | None:
    """The secret, read now; None where the section gives none. `where` prefixes the key in a
    ConfigError (e.g. "intake." for intake.token_file)."""
    inline: SecretStr | None = _field(section, name)
    env: str | None = _field(section, f"{name}_env")
    path: Path | None = _field(section, f"{name}_file")
    if inline is not None:
        return inline.get_secret_value()
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{where}{name}_env: environment variable {env} is not set")
        return value
    if path is not None:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}{name}_file: cannot read {path}: {exc.strerror}") from None
    return None


def _field(section: BaseModel, name: str) -> Any:
    """A field's value; None where the section has no such field (a method of that name)."""
    return getattr(section, name) if name in type(section).model_fields else None

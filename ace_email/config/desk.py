"""The browser desk's configuration: `[desk]` (where it listens, how often it refreshes, the
Web UI it links to) and who may sign in: agents' and `[[supervisors]]`' password hashes
(argon2, as `password_hash` or in `password_file`)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from ace_email.config.base import ConfigError, ReadableFile, Section
from ace_email.config.secrets import read_secret, sources_given

ARGON2_PREFIX = "$argon2"


class SignIn(Section):
    """Mixed into agents and supervisors: the argon2 hash of their desk password."""

    password_hash: str | None = Field(default=None, pattern=r"^\$argon2(id|i|d)\$")
    password_file: ReadableFile | None = Field(
        default=None, description="a file holding the argon2 hash (one line)"
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> Self:
        if self.password_hash is not None and self.password_file is not None:
            raise ValueError("give only one of password_hash, password_file")
        return self

    def desk_password_hash(self, where: str) -> str | None:
        """The hash, read now; None for someone who cannot sign in to the desk."""
        if self.password_hash is not None:
            return self.password_hash
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.password_file: cannot read: {exc.strerror}") from None
        if not text.startswith(ARGON2_PREFIX):
            raise ConfigError(
                f"{where}.password_file: {self.password_file} holds no argon2 hash "
                "(make one with `starter.py hash-password`)"
            )
        return text


class SupervisorSettings(SignIn):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$")
    name: str = ""


class DeskSettings(Section):
    """`[desk]`: the agents' desk and the supervisors' board (`desk.py`)."""

    listen: str = Field(default="127.0.0.1:8080", pattern=r"^\[?[^\s\]]+\]?:\d{1,5}$")
    refresh_seconds: float = Field(
        default=1.0, ge=0.2, le=60, description="one shared refresh for every open page"
    )
    web_ui_url: str = Field(
        default="http://127.0.0.1:8233", description="the Temporal Web UI the board links to"
    )
    secure_cookies: bool = Field(
        default=False, description="mark cookies Secure: set it when the desk is behind TLS"
    )
    session_key_env: str | None = None
    session_key_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        sources_given(self, "session_key")
        return self

    def session_key(self) -> str | None:
        """The key that signs session cookies; None: a new one per start (sign in again)."""
        return read_secret(self, "session_key", "desk.")

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

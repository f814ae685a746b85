"""Where Temporal is and how to reach it safely: address, namespace, task queue, TLS (mutual TLS
with a client certificate) and an API key; how payloads travel: the payload encryption keys, and
the codec server that lets the Web UI read them; and the intake endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import (
    Field,
    model_validator,
)

from ace_email.config.base import ConfigError, ReadableFile, Section, is_loopback
from ace_email.config.secrets import read_secret, sources_given
from ace_email.temporal.codec import KEY_ID_PATTERN, KeyringError, parse_keyring


class IntakeSettings(Section):
    """The HTTP endpoint that creates work items and social contacts."""

    host: str = "127.0.0.1"
    port: int = Field(default=8082, ge=1, le=65535)
    token_env: str | None = None
    token_file: ReadableFile | None = None
    max_body_kb: int = Field(default=256, ge=1, le=10240)

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        sources_given(self, "token")
        return self

    def token(self) -> str:
        """The bearer token every caller must present; the endpoint does not run without one."""
        if self.token_env is None and self.token_file is None:
            raise ConfigError("intake: set token_env or token_file; the endpoint needs a token")
        token = read_secret(self, "token", "intake.")
        if not token:
            raise ConfigError("intake.token: the token is empty")
        return token


class EncryptionSettings(Section):
    """AES-256-GCM encryption of every workflow payload (see ace_email/temporal/codec.py).

    The keyring (from `key_env` or `key_file`) holds `ID:KEY` entries, or one bare key that
    is `key_id`'s. `key_id` names the key new payloads are encrypted with; the others decrypt
    payloads written before a rotation.
    """

    key_id: str = Field(pattern=KEY_ID_PATTERN)
    key_env: str | None = None
    key_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.key_env is None) == (self.key_file is None):
            raise ValueError("give exactly one of key_env, key_file")
        return self

    def keys(self) -> dict[str, bytes]:
        """The keyring, read now; a ConfigError names the field and the fault, never a key."""
        where = "temporal.encryption.key"
        text = read_secret(self, "key", "temporal.encryption.") or ""
        source = f"{where}_env ({self.key_env})" if self.key_env else f"{where}_file"
        try:
            keys = parse_keyring(text, self.key_id)
        except KeyringError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if self.key_id not in keys:
            raise ConfigError(
                f"temporal.encryption.key_id: {self.key_id!r} is not in {source} "
                f"(it holds {', '.join(sorted(keys))})"
            )
        return keys


class CodecServerSettings(Section):
    """The HTTP codec server that lets the Web UI show decrypted payloads."""

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=1, le=65535)
    cors_origins: list[str] = Field(
        default=["http://localhost:8233", "http://127.0.0.1:8233"],
        description="Web UI origins allowed to call the codec server",
    )
    token_env: str | None = None
    token_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> Self:
        sources_given(self, "token")
        return self

    def token(self) -> str | None:
        """The bearer token callers must present, if one is configured."""
        if self.token_env is None and self.token_file is None:
            return None
        token = read_secret(self, "token", "temporal.codec_server.")
        if not token:
            raise ConfigError("temporal.codec_server.token: the token is empty")
        return token


def _pem(path: Path | None, marker: str, what: str) -> None:
    """A file that should hold PEM `marker` blocks; ValueError naming the file otherwise."""
    if path is None:
        return
    if marker.encode() not in path.read_bytes():
        raise ValueError(f"{path} holds no {what} (a PEM file with '{marker}')")


class TemporalTlsSettings(Section):
    """`[temporal.tls]`: present means TLS on. An empty table trusts the system's CAs; the
    files are PEM. A client certificate (mutual TLS) needs its key, and the key its
    certificate."""

    server_ca_file: ReadableFile | None = None
    server_name: str | None = Field(default=None, min_length=1)
    client_cert_file: ReadableFile | None = None
    client_key_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _files_hold_what_they_should(self) -> Self:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            given, missing = (
                ("client_cert_file", "client_key_file")
                if self.client_key_file is None
                else ("client_key_file", "client_cert_file")
            )
            raise ValueError(f"{given} is given without {missing}: mutual TLS needs both")
        _pem(self.server_ca_file, "-----BEGIN CERTIFICATE-----", "certificate")
        _pem(self.client_cert_file, "-----BEGIN CERTIFICATE-----", "certificate")
        _pem(self.client_key_file, "PRIVATE KEY-----", "private key")
        return self


class TemporalSettings(Section):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "ace-email"
    api_key_env: str | None = Field(default=None, min_length=1)
    api_key_file: ReadableFile | None = None
    tls: TemporalTlsSettings | None = None
    connect_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="how long to wait for Temporal's first answer (a TLS port that never "
        "answers would hold a connection attempt forever)",
    )
    encryption: EncryptionSettings | None = None
    codec_server: CodecServerSettings = CodecServerSettings()

    @model_validator(mode="after")
    def _api_key_never_in_clear(self) -> Self:
        if sources_given(self, "api_key") and self.tls is None and not is_loopback(self.host):
            raise ValueError(
                f"an API key is never sent in clear: add a [temporal.tls] table (TLS) for "
                f"{self.address}, or remove api_key_env/api_key_file"
            )
        return self

    @property
    def host(self) -> str:
        """The address's host, without its port (and without an IPv6 address's brackets)."""
        host = self.address.rpartition(":")[0] if ":" in self.address else self.address
        return host.strip("[]")

    def api_key(self) -> str | None:
        """The API key, read now (a rotated file takes effect at the next connection)."""
        key = read_secret(self, "api_key", "temporal.")
        if key is not None and not key:
            raise ConfigError("temporal.api_key: the API key is empty")
        return key

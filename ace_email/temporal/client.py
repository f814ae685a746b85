"""Connecting to Temporal the same way everywhere: TLS, a client certificate and an API key as
configured, pydantic payloads (encrypted when configured), and one clear line when Temporal is
down or refuses us."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime
from temporalio.service import RPCError, TLSConfig

from ace_email.config.base import ConfigError
from ace_email.config.temporal import EncryptionSettings, TemporalSettings
from ace_email.contracts import search_attributes as sa
from ace_email.temporal.codec import EncryptionCodec


class TemporalUnavailable(Exception):
    """Temporal cannot be reached; scripts exit with `exit_status` and this one line."""

    exit_status = 2


class TemporalRefused(TemporalUnavailable):
    """Temporal (or the proxy before it) answered and refused us: a certificate, the CA or the
    API key is wrong. Scripts exit 1 with the line that says what to fix."""

    exit_status = 1


def encryption_codec(encryption: EncryptionSettings) -> EncryptionCodec:
    """The codec for the configured keys; raises ConfigError if a key cannot be read."""
    return EncryptionCodec(encryption.keys(), encryption.key_id)


def encrypted_converter(codec: EncryptionCodec) -> DataConverter:
    """Pydantic payloads, encrypted; failure messages and stack traces travel encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def data_converter(temporal: TemporalSettings) -> DataConverter:
    if temporal.encryption is None:
        return pydantic_data_converter
    return encrypted_converter(encryption_codec(temporal.encryption))


def tls_config(temporal: TemporalSettings) -> TLSConfig | bool:
    """`[temporal.tls]` for the client: False without the table; the files are read now."""
    tls = temporal.tls
    if tls is None:
        return False

    def read(path: Path | None, key: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"temporal.tls.{key}: cannot read {path}: {exc.strerror}") from None

    return TLSConfig(
        server_root_ca_cert=read(tls.server_ca_file, "server_ca_file"),
        domain=tls.server_name,
        client_cert=read(tls.client_cert_file, "client_cert_file"),
        client_private_key=read(tls.client_key_file, "client_key_file"),
    )


async def connect(
    temporal: TemporalSettings,
    *,
    runtime: Runtime | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    """A client as configured; TemporalUnavailable (or TemporalRefused) with one line if the
    first call fails. `runtime` carries the worker's metrics; `interceptors` its tracing."""
    converter = data_converter(temporal)
    connecting = Client.connect(
        temporal.address,
        namespace=temporal.namespace,
        data_converter=converter,
        tls=tls_config(temporal),
        api_key=temporal.api_key(),
        runtime=runtime,
        interceptors=interceptors,
    )
    try:
        return await asyncio.wait_for(connecting, temporal.connect_timeout_seconds)
    except TimeoutError:
        waited = f"no answer in {temporal.connect_timeout_seconds:g} s"
        raise TemporalUnavailable(connect_failure(temporal, waited)) from None
    except (RuntimeError, RPCError, OSError) as exc:
        raise refusal_or_failure(temporal, exc) from None


# What the client's transport says, and what it means for the person who runs the command.
_CAUSES = (
    (
        ("connectionrefused", "connection refused"),
        "nothing listens there (is the Temporal server running?)",
    ),
    (
        ("dns error", "lookup address", "name or service not known"),
        "that host name is not known (DNS)",
    ),
    (
        ("h2 protocol", "http2", "frame_size", "invalid http"),
        "something answers there, but not Temporal's plain gRPC (a TLS port: add "
        "[temporal.tls]; or the Web UI's port)",
    ),
    (
        ("timeout", "timed out", "deadline", "no answer in"),
        "no answer in time (a firewall, a wrong port, or a TLS port that does not answer)",
    ),
    (("certificate", "tls", "ssl", "handshake"), "the TLS handshake failed"),
)


def refusal_or_failure(temporal: TemporalSettings, exc: BaseException) -> TemporalUnavailable:
    """TemporalRefused where Temporal (or a proxy before it) refused us, with what to fix;
    else TemporalUnavailable. The text names settings, never their values: the SDK's error
    carries no key, and nothing of it but the cause is shown."""
    fix = refusal(temporal, str(exc))
    if fix is None:
        return TemporalUnavailable(connect_failure(temporal, str(exc)))
    return TemporalRefused(
        f"Temporal at {temporal.address} (namespace {temporal.namespace}) refused the "
        f"connection: {fix}"
    )


def refusal(temporal: TemporalSettings, detail: str) -> str | None:
    """What to fix, for an error that says the server (or a proxy) refused our credentials
    or its certificate failed our checks; None for any other failure."""
    text = detail.lower()
    tls = temporal.tls
    has_key = temporal.api_key_env is not None or temporal.api_key_file is not None
    has_cert = tls is not None and tls.client_cert_file is not None
    key_setting = "temporal.api_key_env" if temporal.api_key_env else "temporal.api_key_file"
    if "unknownissuer" in text or "unknown issuer" in text:
        if tls is not None and tls.server_ca_file is not None:
            return (
                "the server's certificate is not signed by the configured CA "
                f"(temporal.tls.server_ca_file = {tls.server_ca_file}); give the CA that "
                "signed it"
            )
        return (
            "the server's certificate is not signed by a CA this system trusts; give its CA "
            "in temporal.tls.server_ca_file"
        )
    if "notvalidforname" in text or "not valid for name" in text:
        return (
            "the server's certificate is not made out to this host name; set "
            "temporal.tls.server_name to a name the certificate holds"
        )
    if "expired" in text and "certificate" in text:
        return "the server's certificate has expired (or this machine's clock is wrong)"
    if "invalidcontenttype" in text:
        return (
            "the server does not speak TLS on this port; remove [temporal.tls] or give the "
            "address of its TLS port"
        )
    if any(n in text for n in ("certificaterequired", "certificate required", "no required ssl")):
        return (
            "the server wants a client certificate (mutual TLS); set "
            "temporal.tls.client_cert_file and temporal.tls.client_key_file"
        )
    if any(
        n in text for n in ("badcertificate", "unknownca", "certificate rejected", "unknown ca")
    ):
        return _client_cert_refused()
    if "status: 400 bad request" in text and tls is not None:
        # nginx answers a missing or untrusted client certificate with a plain 400.
        return (
            _client_cert_refused()
            if has_cert
            else (
                "the server wants a client certificate (mutual TLS); set "
                "temporal.tls.client_cert_file and temporal.tls.client_key_file"
            )
        )
    if "unauthenticated" in text or "401 unauthorized" in text:
        if has_key:
            return f"the API key was refused; check {key_setting} (a revoked or mistyped key)"
        if "api key" in text or "authorization" in text or not has_cert:
            return (
                "the server wants credentials: an API key (temporal.api_key_env or "
                "temporal.api_key_file), or a client certificate (temporal.tls)"
            )
        return _client_cert_refused()
    if "permissiondenied" in text or "permission denied" in text or "403 forbidden" in text:
        return (
            f"these credentials may not use namespace {temporal.namespace}; check "
            "temporal.namespace, and the key's or the certificate's permissions"
        )
    return None


def _client_cert_refused() -> str:
    return (
        "the server refused our client certificate (temporal.tls.client_cert_file): it is "
        "not signed by a CA the server trusts, or has expired"
    )


def connect_failure(temporal: TemporalSettings, detail: str) -> str:
    """One line for a failed connection: the address, what went wrong, what to check."""
    lowered = detail.lower()
    cause = next(
        (words for needles, words in _CAUSES if any(n in lowered for n in needles)),
        detail.splitlines()[0][:300] if detail else "no reason given",
    )
    return (
        f"cannot reach Temporal at {temporal.address} (namespace {temporal.namespace}): "
        f"{cause}. Check temporal.address in the configuration "
        "(or ACE_EMAIL_TEMPORAL__ADDRESS)."
    )


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the custom search attributes that are missing; returns the names added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in sa.ALL
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)

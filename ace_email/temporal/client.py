"""Connecting to Temporal the same way everywhere: pydantic payloads, encrypted when configured,
and a clear error if Temporal is down."""

from __future__ import annotations

import dataclasses

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import RPCError

from ace_email.config.temporal import EncryptionSettings, TemporalSettings
from ace_email.contracts import search_attributes as sa
from ace_email.temporal.codec import EncryptionCodec


class TemporalUnavailable(Exception):
    pass


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


async def connect(temporal: TemporalSettings) -> Client:
    converter = data_converter(temporal)
    try:
        return await Client.connect(
            temporal.address,
            namespace=temporal.namespace,
            data_converter=converter,
        )
    except (RuntimeError, RPCError, OSError) as exc:
        raise TemporalUnavailable(connect_failure(temporal, str(exc))) from None


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
        "something answers there, but not Temporal's gRPC (the Web UI's port, say)",
    ),
    (("timeout", "timed out", "deadline"), "no answer in time (a firewall, or a wrong port)"),
    (("certificate", "tls", "ssl", "handshake"), "the TLS handshake failed"),
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

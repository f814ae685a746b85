"""Connecting to Temporal the same way everywhere: pydantic payloads, a clear error if down."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from ace_email.settings import TemporalSettings


class TemporalUnavailable(Exception):
    pass


async def connect(temporal: TemporalSettings) -> Client:
    try:
        return await Client.connect(
            temporal.address,
            namespace=temporal.namespace,
            data_converter=pydantic_data_converter,
        )
    except (RuntimeError, RPCError, OSError) as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {temporal.address} (namespace {temporal.namespace}): {exc}"
        ) from None

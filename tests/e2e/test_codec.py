"""Payload encryption: the codec, its keys and configuration, the codec server, and a pipeline
whose history holds only ciphertext."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import Message
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from ace_email.analysis import mime
from ace_email.config.base import ConfigError
from ace_email.config.settings import Settings
from ace_email.config.temporal import EncryptionSettings, TemporalSettings
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.mail.imap_pool import ImapPool
from ace_email.operations.contacts import assign
from ace_email.operations.registry import sync
from ace_email.services.codec import CodecServer, codec_server
from ace_email.temporal.client import connect, data_converter
from ace_email.temporal.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    KeyringError,
    PayloadDecryptionError,
    parse_keyring,
)
from tests.e2e.test_secret_scan import payloads_in, wait_status
from tests.support import AGENT_EMAIL, MailStack, make_message
from worker import ACTIVITY_THREADS, build_worker

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# The codec


async def test_round_trip_keeps_metadata_and_data() -> None:
    codec = EncryptionCodec({"a": KEY_A}, "a")
    original = [plain("hello"), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await codec.encode(original)
    for payload in encoded:
        assert payload.metadata["encoding"] == ENCODING
        assert payload.metadata[KEY_ID_METADATA] == b"a"
        assert b"hello" not in payload.data
    assert await codec.decode(encoded) == original


async def test_each_payload_gets_its_own_nonce() -> None:
    codec = EncryptionCodec({"a": KEY_A}, "a")
    first, second = await codec.encode([plain("same"), plain("same")])
    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_payload_from_an_old_key_decodes_after_rotation() -> None:
    before = EncryptionCodec({"a": KEY_A}, "a")
    after = EncryptionCodec({"a": KEY_A, "b": KEY_B}, "b")
    old = await before.encode([plain("written before the rotation")])
    new = await after.encode([plain("written after")])
    assert new[0].metadata[KEY_ID_METADATA] == b"b"
    assert await after.decode(old + new) == [
        plain("written before the rotation"),
        plain("written after"),
    ]


async def test_unknown_key_id_is_named() -> None:
    encoded = await EncryptionCodec({"retired": KEY_A}, "retired").encode([plain("x")])
    with pytest.raises(PayloadDecryptionError, match=r"key id 'retired'.*known: a, b"):
        await EncryptionCodec({"a": KEY_A, "b": KEY_B}, "a").decode(encoded)


@pytest.mark.parametrize("part", ["data", "key id", "nonce", "truncated"])
async def test_tampered_payload_is_refused(part: str) -> None:
    codec = EncryptionCodec({"a": KEY_A, "b": KEY_B}, "a")
    (payload,) = await codec.encode([plain("pay 10 EUR")])
    data = bytearray(payload.data)
    if part == "data":
        data[-1] ^= 1
    elif part == "nonce":
        data[0] ^= 1
    elif part == "truncated":
        data = data[:8]
    else:
        payload.metadata[KEY_ID_METADATA] = b"b"
    payload.data = bytes(data)
    with pytest.raises(PayloadDecryptionError):
        await codec.decode([payload])


async def test_same_key_id_with_a_different_key_is_refused() -> None:
    encoded = await EncryptionCodec({"a": KEY_A}, "a").encode([plain("x")])
    with pytest.raises(PayloadDecryptionError, match="fails authentication"):
        await EncryptionCodec({"a": KEY_B}, "a").decode(encoded)


async def test_plain_payloads_pass_unchanged() -> None:
    codec = EncryptionCodec({"a": KEY_A}, "a")
    written_before_encryption = [plain("old history"), Payload(data=b"no metadata")]
    assert await codec.decode(written_before_encryption) == written_before_encryption


# Keys and configuration


def test_keyring_accepts_hex_base64_and_url_safe_base64() -> None:
    url_safe = base64.urlsafe_b64encode(KEY_B).decode()
    text = f"# keys\nold:{KEY_A.hex()}\n\ncurrent:{url_safe}  # since March\n"
    assert parse_keyring(text, "current") == {"old": KEY_A, "current": KEY_B}
    assert parse_keyring(f"a:{KEY_A.hex()},b:{KEY_B.hex()}", "b") == {"a": KEY_A, "b": KEY_B}
    assert parse_keyring(base64.b64encode(KEY_A).decode() + "\n", "k1") == {"k1": KEY_A}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        (base64.b64encode(os.urandom(16)).decode(), "'k1': must be 32 bytes, is 16 bytes"),
        ("not-a-key!", "not base64 or hex"),
        (f"a:{KEY_A.hex()}\nb {KEY_B.hex()}", "entry 2: expected ID:KEY"),
        (f"a:{KEY_A.hex()}\na:{KEY_B.hex()}", "key id 'a' appears twice"),
        (
            f"a:{KEY_A.hex()[:-2]}",
            r"entry 1 \(key 'a'\): must be 32 bytes \(64 hex digits\), has 62",
        ),
    ],
)
def test_bad_keyring_is_described_without_the_key(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message) as error:
        parse_keyring(text, "k1")
    assert KEY_A.hex() not in str(error.value)


def test_bad_key_settings_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACE_TEST_NO_SUCH_KEY", raising=False)
    unset = EncryptionSettings(key_id="k1", key_env="ACE_TEST_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match="key_env: environment variable ACE_TEST_NO_SUCH_KEY"):
        unset.keys()
    with pytest.raises(ValueError, match=r"key_file\n.*cannot read .*absent.keys: No such file"):
        EncryptionSettings(key_id="k1", key_file=tmp_path / "absent.keys")
    short = tmp_path / "short.keys"
    short.write_text(os.urandom(16).hex())
    with pytest.raises(ConfigError, match=r"key_file: key 'k1': must be 32 bytes"):
        EncryptionSettings(key_id="k1", key_file=short).keys()
    other = tmp_path / "other.keys"
    other.write_text(f"k2:{KEY_A.hex()}")
    with pytest.raises(ConfigError, match=r"key_id: 'k1' is not in .*key_file \(it holds k2\)"):
        EncryptionSettings(key_id="k1", key_file=other).keys()
    with pytest.raises(ValueError, match="exactly one of key_env, key_file"):
        EncryptionSettings(key_id="k1")


def test_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACE_TEST_PAYLOAD_KEY", f"k1:{KEY_A.hex()} k2:{KEY_B.hex()}")
    settings = EncryptionSettings(key_id="k2", key_env="ACE_TEST_PAYLOAD_KEY")
    assert settings.keys() == {"k1": KEY_A, "k2": KEY_B}


def test_converter_is_plain_without_encryption_and_encrypted_with_it(tmp_path: Path) -> None:
    assert data_converter(TemporalSettings()) is pydantic_data_converter
    keys = tmp_path / "payload.keys"
    keys.write_text(f"k1:{KEY_A.hex()}")
    temporal = TemporalSettings(encryption=EncryptionSettings(key_id="k1", key_file=keys))
    converter = data_converter(temporal)
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class


async def test_connect_stops_on_a_bad_key_before_reaching_temporal(tmp_path: Path) -> None:
    keys = tmp_path / "payload.keys"
    keys.write_text("k1:tooshort")
    temporal = TemporalSettings(
        address="127.0.0.1:1", encryption=EncryptionSettings(key_id="k1", key_file=keys)
    )
    with pytest.raises(ConfigError, match="key_file: entry 1 \\(key 'k1'\\)"):
        await connect(temporal)


# The codec server, over real HTTP on loopback

UI = "http://localhost:8233"


@pytest.fixture
def server() -> Iterator[CodecServer]:
    codec = EncryptionCodec({"a": KEY_A, "b": KEY_B}, "b")
    with CodecServer(("127.0.0.1", 0), codec, [UI, "http://127.0.0.1:8233"], "s3cret") as server:
        server.start_in_thread()
        try:
            yield server
        finally:
            server.shutdown()


def call(
    server: CodecServer,
    path: str,
    body: object = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        server.url + path, data=data, method=method, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, _titled(response.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, _titled(error.headers), json.loads(raw) if raw else None


def _titled(headers: Message) -> dict[str, str]:
    """Header names are case-insensitive; the server may send them in lower case."""
    return {name.title(): value for name, value in headers.items()}


def wire(payload: Payload) -> dict[str, object]:
    return {
        "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def from_wire(document: object) -> list[Payload]:
    assert isinstance(document, dict)
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in item.get("metadata", {}).items()},
            data=base64.b64decode(item.get("data", "")),
        )
        for item in document["payloads"]
    ]


AUTH = {"Authorization": "Bearer s3cret", "Content-Type": "application/json", "Origin": UI}


def test_codec_server_encodes_and_decodes(server: CodecServer) -> None:
    original = [plain("order 4711"), plain("ünïcode")]
    status, headers, encoded = call(
        server, "/encode", {"payloads": [wire(p) for p in original]}, headers=AUTH
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == UI
    sealed = from_wire(encoded)
    assert [p.metadata["encoding"] for p in sealed] == [ENCODING, ENCODING]
    assert all(b"4711" not in p.data for p in sealed)
    status, _, decoded = call(
        server, "/decode", {"payloads": [wire(p) for p in sealed]}, headers=AUTH
    )
    assert status == 200
    assert from_wire(decoded) == original


async def test_codec_server_decodes_what_workers_wrote_under_an_old_key(
    server: CodecServer,
) -> None:
    old = await EncryptionCodec({"a": KEY_A}, "a").encode([plain("before rotation")])
    mixed = [*old, plain("before encryption")]
    status, _, decoded = call(
        server, "/decode", {"payloads": [wire(p) for p in mixed]}, headers=AUTH
    )
    assert status == 200
    assert from_wire(decoded) == [plain("before rotation"), plain("before encryption")]


def test_codec_server_answers_the_web_ui_preflight(server: CodecServer) -> None:
    status, headers, _ = call(
        server,
        "/decode",
        method="OPTIONS",
        headers={
            "Origin": "http://127.0.0.1:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8233"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = headers["Access-Control-Allow-Headers"].lower()
    assert {"x-namespace", "content-type", "authorization"} <= {
        h.strip() for h in allowed.split(",")
    }


def test_codec_server_gives_no_cors_grant_to_other_origins(server: CodecServer) -> None:
    status, headers, _ = call(
        server, "/decode", method="OPTIONS", headers={"Origin": "http://evil.example"}
    )
    assert status == 204
    assert "Access-Control-Allow-Origin" not in headers


def test_codec_server_requires_the_token(server: CodecServer) -> None:
    body = {"payloads": [wire(plain("x"))]}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, _, answer = call(server, "/decode", body, headers=headers)
        assert status == 401
        assert answer == {"error": "missing or wrong bearer token"}


def test_codec_server_explains_bad_requests(server: CodecServer) -> None:
    stranger = EncryptionCodec({"z": KEY_A}, "z").encrypt(plain("x"))
    status, _, answer = call(server, "/decode", {"payloads": [wire(stranger)]}, headers=AUTH)
    assert status == 400
    assert isinstance(answer, dict)
    assert "key id 'z'" in answer["error"]
    status, _, answer = call(server, "/decode", {"payloads": 3}, headers=AUTH)
    assert status == 400
    status, _, _ = call(server, "/other", {"payloads": []}, headers=AUTH)
    assert status == 404


def test_codec_server_needs_encryption_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KEY_ID", "KEY_ENV", "KEY_FILE"):
        monkeypatch.delenv(f"ACE_EMAIL_TEMPORAL__ENCRYPTION__{name}", raising=False)
    settings = Settings()
    assert settings.temporal.encryption is None
    with pytest.raises(ConfigError, match=r"temporal\.encryption is not configured"):
        codec_server(settings)


# A pipeline with encryption on: the raw history holds ciphertext only


# Search attributes must stay readable for the server to index them; a patch marker holds the
# patch's name, written by the SDK's core beneath the data converter.
# Search attributes, and the SDK's own bookkeeping of a patch or a local activity (its type,
# attempt and times; the local activity's result is encrypted like any other).
CLEAR_BY_DESIGN = (
    ".search_attributes",
    ".marker_recorded_event_attributes.details[patch-data]",
    ".marker_recorded_event_attributes.details[data]",
)


@pytest.mark.e2e
async def test_pipeline_history_is_encrypted(
    settings: Settings, mail: MailStack, temporal_address: str, tmp_path: Path
) -> None:
    keys = tmp_path / "payload.keys"
    keys.write_text(f"k1:{KEY_A.hex()}\n")
    temporal = settings.temporal.model_copy(
        update={"encryption": EncryptionSettings(key_id="k1", key_file=keys)}
    )
    settings = settings.model_copy(update={"temporal": temporal})
    client = await connect(settings.temporal)
    raw_client = await Client.connect(
        temporal_address, namespace="default", data_converter=pydantic_data_converter
    )
    body = "The serial number is SN-8d1f7c; please send a new lid."
    raw = make_message("Lid missing", body, attachment=("receipt.txt", b"RECEIPT-77ab"))
    contact = ids.contact_workflow_id(settings.accounts[0].name, mime.message_key(raw))
    pool = ImapPool(settings)
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(client, settings, pool, executor):
            await sync(client, settings)
            await mail.send(raw)

            await wait_status(client, contact, ContactStatus.QUEUED)
            await assign(client, settings, contact, "alice")
            await wait_status(client, contact, ContactStatus.DELIVERED)
            assert await mail.count(AGENT_EMAIL) == 1
        pool.close_all()

    history = await raw_client.get_workflow_handle(contact).fetch_history()
    found = [
        (path, payload)
        for event in history.events
        for path, payload in payloads_in(event)
        if not any(part in path for part in CLEAR_BY_DESIGN)
    ]
    assert len(found) >= 5
    clear = [path for path, payload in found if payload.metadata["encoding"] != ENCODING]
    assert not clear
    assert {payload.metadata[KEY_ID_METADATA] for _, payload in found} == {b"k1"}
    everything = history.to_json() + "".join(
        e.SerializeToString().decode("latin-1") for e in history.events
    )
    for secret in ("SN-8d1f7c", "new lid", "RECEIPT-77ab", "Lid missing"):
        assert secret not in everything
    opened = await EncryptionCodec({"k1": KEY_A}, "k1").decode([p for _, p in found])
    assert any(b"Lid missing" in payload.data for payload in opened)

    # The temporal CLI speaks the same remote codec protocol as the Web UI.
    codec = EncryptionCodec({"k1": KEY_A}, "k1")
    with CodecServer(("127.0.0.1", 0), codec, [UI], "cli-token") as server:
        server.start_in_thread()
        try:
            shown = await asyncio.to_thread(
                subprocess.run,
                [
                    str(Path(sys.executable).parent / "temporal"),
                    *("workflow", "show", "--workflow-id", contact, "--output", "json"),
                    *("--address", temporal_address, "--codec-endpoint", server.url),
                    *("--codec-auth", "Bearer cli-token"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            server.shutdown()
    assert shown.returncode == 0, shown.stderr
    encodings = set(re.findall(r'"encoding": "([^"]+)"', shown.stdout))
    assert base64.b64encode(ENCODING).decode() not in encodings
    data = [base64.b64decode(d) for d in re.findall(r'"data": "([^"]+)"', shown.stdout)]
    assert any(b"Lid missing" in item for item in data)

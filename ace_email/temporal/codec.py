"""Encryption of every Temporal payload with AES-256-GCM, so histories hold no readable data.

An encrypted payload has the metadata `encoding: binary/encrypted` and `encryption-key-id: <id>`;
its data is a 96-bit random nonce followed by the AES-GCM ciphertext of the original payload
(metadata and data, as a serialized `Payload`). The key id is authenticated too, so a payload
cannot be passed off as belonging to another key. Encoding uses the current key; decoding uses
whichever key the payload names. Payloads without the encrypted encoding (written before
encryption was turned on) decode unchanged.

Keys are given as a keyring text: entries `ID:KEY` separated by newlines, commas or spaces, where
KEY is 32 bytes in base64 or hex; `#` starts a comment. A text holding one bare key is that key
for the configured key id.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class PayloadDecryptionError(ValueError):
    """A payload that claims to be encrypted cannot be decrypted; the message says why."""


class KeyringError(ValueError):
    """A keyring text is malformed; the message names the entry, never the key."""


def decode_key(text: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64 (standard or URL-safe)."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]+", text):
        if len(text) != 2 * KEY_BYTES:
            raise KeyringError(f"must be {KEY_BYTES} bytes (64 hex digits), has {len(text)} digits")
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(
            f"not base64 or hex (expected {KEY_BYTES} bytes: 64 hex digits or 44 base64 characters)"
        ) from None
    if len(key) != KEY_BYTES:
        raise KeyringError(f"must be {KEY_BYTES} bytes, is {len(key)} bytes")
    return key


def parse_keyring(text: str, default_id: str) -> dict[str, bytes]:
    """Keys by id from a keyring text (see the module's description)."""
    tokens = [
        token
        for line in text.splitlines()
        for token in re.split(r"[\s,]+", line.split("#", 1)[0])
        if token
    ]
    if not tokens:
        raise KeyringError("holds no key")
    if len(tokens) == 1 and ":" not in tokens[0]:
        try:
            return {default_id: decode_key(tokens[0])}
        except KeyringError as exc:
            raise KeyringError(f"key {default_id!r}: {exc}") from None
    keys: dict[str, bytes] = {}
    for number, token in enumerate(tokens, start=1):
        key_id, colon, key_text = token.partition(":")
        if not colon:
            raise KeyringError(f"entry {number}: expected ID:KEY")
        if not re.fullmatch(KEY_ID_PATTERN, key_id):
            raise KeyringError(f"entry {number}: invalid key id {key_id!r}")
        if key_id in keys:
            raise KeyringError(f"entry {number}: key id {key_id!r} appears twice")
        try:
            keys[key_id] = decode_key(key_text)
        except KeyringError as exc:
            raise KeyringError(f"entry {number} (key {key_id!r}): {exc}") from None
    return keys


def new_key_text() -> str:
    """A fresh random key, base64."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads, with key rotation by key id."""

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"the current key id {current!r} is not among the keys")
        for key_id, key in keys.items():
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {KEY_BYTES} bytes, is {len(key)}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current = current

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.encrypt_all(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self.decrypt_all(payloads)

    def encrypt_all(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    def decrypt_all(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.current.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id}, data=nonce + sealed
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise PayloadDecryptionError(f"encrypted payload without {KEY_ID_METADATA} metadata")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r}, which is not configured "
                f"(known: {', '.join(self.key_ids)}); add that key to temporal.encryption"
            )
        if len(payload.data) <= NONCE_BYTES:
            raise PayloadDecryptionError(f"encrypted payload (key id {key_id!r}) is truncated")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, raw_id)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"encrypted payload (key id {key_id!r}) fails authentication: "
                "altered, or encrypted with a different key under the same id"
            ) from None
        return Payload.FromString(plain)

"""Codes at rest: AES-GCM encryption with a key id (rotation), HMAC-SHA256 lookup hashes; codes
leaving the service: sealed under the delivery service's public key (chassis.sealed_codes).

The ciphertext is bound to the code's lookup hash (associated data), so a ciphertext copied onto
another code's row does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chassis.sealed_codes import CodeSealer

NONCE_BYTES = 12
# 128 bits of HMAC-SHA256: no two of even billions of codes share one by chance, and the unique
# index the pool is checked against stays half the size.
LOOKUP_BYTES = 16


class KeyConfigError(ValueError):
    """The configured keys are malformed."""


def parse_keys(text: str) -> dict[str, bytes]:
    """`id:base64,id:base64` → {id: key}; every key must be 16, 24 or 32 bytes."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise KeyConfigError("encryption keys are written id:base64key")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise KeyConfigError(f"key {key_id!r} is not base64") from exc
        if len(key) not in (16, 24, 32):
            raise KeyConfigError(f"key {key_id!r} must be 16, 24 or 32 bytes")
        keys[key_id] = key
    if not keys:
        raise KeyConfigError("no encryption key configured")
    return keys


@dataclass(frozen=True)
class Sealed:
    key_id: str
    secret: bytes


class CodeVault:
    """Encrypts, decrypts and hashes codes; holds every key it may need to read old rows."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        active_key_id: str | None,
        lookup_key: bytes,
        *,
        delivery_sealer: CodeSealer | None = None,
    ) -> None:
        if not keys:
            raise KeyConfigError("no encryption key configured")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id or next(iter(keys))
        if self.active_key_id not in self._ciphers:
            raise KeyConfigError(f"active key {self.active_key_id!r} is not among the configured keys")
        if len(lookup_key) < 16:
            raise KeyConfigError("the lookup key must be at least 16 bytes")
        self._lookup = hmac.new(lookup_key, digestmod=hashlib.sha256)
        self._delivery_sealer = delivery_sealer

    def lookup_hash(self, code: str) -> bytes:
        mac = self._lookup.copy()
        mac.update(code.encode())
        return mac.digest()[:LOOKUP_BYTES]

    def seal(self, code: str, lookup_hash: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        cipher = self._ciphers[self.active_key_id]
        return Sealed(self.active_key_id, nonce + cipher.encrypt(nonce, code.encode(), lookup_hash))

    def open(self, key_id: str, secret: bytes, lookup_hash: bytes) -> str:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise KeyConfigError(f"the key {key_id!r} that sealed this code is not configured")
        return cipher.decrypt(secret[:NONCE_BYTES], secret[NONCE_BYTES:], lookup_hash).decode()

    def seal_for_delivery(self, code: str, code_id: uuid.UUID) -> str:
        """The code as `voucher.issued` carries it: sealed so that only the delivery service opens it."""
        if self._delivery_sealer is None:
            raise KeyConfigError("no seal public key configured: codes cannot be issued")
        return self._delivery_sealer.seal(code, code_id)

    def __repr__(self) -> str:
        return f"CodeVault(active_key_id={self.active_key_id!r}, keys={sorted(self._ciphers)})"

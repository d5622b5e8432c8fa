"""Voucher codes sealed for the delivery service (DESIGN.md §5 "Sealed codes").

The voucher service holds only delivery's public key and seals each code it issues; only the delivery
service, which holds the private key, can open it. The scheme is ECIES on X25519: a fresh ephemeral key
pair per code, HKDF-SHA256 of the shared secret into an AES-256-GCM key, the code id as associated data
(a sealed code copied onto another code's event does not open). A sealed code reads
`x25519.<key id>.<base64url(ephemeral public key | nonce | ciphertext)>`; the key id names the key pair,
so the pair can be rotated: delivery opens codes sealed under its current and its previous key.

Keys are written `<key id>:<base64 of the 32 raw key bytes>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import uuid
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import SecretStr

SCHEME = "x25519"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_INFO = b"orchard sealed voucher code v1"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SealError(ValueError):
    """A key is malformed, or a sealed code cannot be opened (unknown key id, tampered, wrong code)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parse_key(text: str, what: str) -> tuple[str, bytes]:
    key_id, sep, encoded = text.strip().partition(":")
    if not sep or not _KEY_ID.fullmatch(key_id):
        raise SealError(f"the {what} is written <key id>:<base64 key> (key id: letters, digits, - or _)")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SealError(f"the {what} {key_id!r} is not base64") from exc
    if len(raw) != _KEY_BYTES:
        raise SealError(f"the {what} {key_id!r} must be {_KEY_BYTES} bytes")
    return key_id, raw


def _derive(shared: bytes, ephemeral: bytes, recipient: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO).derive(shared)
    return AESGCM(key)


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class CodeSealer:
    """Seals codes under one public key (the voucher service's side)."""

    def __init__(self, public_key: SecretStr | str) -> None:
        text = public_key.get_secret_value() if isinstance(public_key, SecretStr) else public_key
        self.key_id, raw = _parse_key(text, "seal public key")
        self._public = X25519PublicKey.from_public_bytes(raw)
        self._raw = raw

    def seal(self, code: str, code_id: uuid.UUID) -> str:
        ephemeral = X25519PrivateKey.generate()
        ephemeral_raw = _raw_public(ephemeral.public_key())
        cipher = _derive(ephemeral.exchange(self._public), ephemeral_raw, self._raw)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = cipher.encrypt(nonce, code.encode(), code_id.bytes)
        return f"{SCHEME}.{self.key_id}.{_b64url(ephemeral_raw + nonce + sealed)}"

    def __repr__(self) -> str:
        return f"CodeSealer(key_id={self.key_id!r})"


class CodeOpener:
    """Opens sealed codes with the current private key and any previous ones (the delivery side)."""

    def __init__(self, private_keys: Iterable[SecretStr | str | None]) -> None:
        self._keys: dict[str, tuple[X25519PrivateKey, bytes]] = {}
        for entry in private_keys:
            text = entry.get_secret_value() if isinstance(entry, SecretStr) else entry
            if not text:
                continue
            key_id, raw = _parse_key(text, "seal private key")
            private = X25519PrivateKey.from_private_bytes(raw)
            self._keys.setdefault(key_id, (private, _raw_public(private.public_key())))
        if not self._keys:
            raise SealError("no seal private key configured")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def open(self, sealed: str, code_id: uuid.UUID) -> SecretStr:
        scheme, _, rest = sealed.partition(".")
        key_id, _, body = rest.partition(".")
        if scheme != SCHEME or not body:
            raise SealError(f"not a sealed code of scheme {SCHEME!r}")
        key = self._keys.get(key_id)
        if key is None:
            raise SealError(f"the code was sealed under key {key_id!r}, which is not configured")
        private, recipient = key
        try:
            raw = _unb64url(body)
        except (binascii.Error, ValueError) as exc:
            raise SealError("the sealed code is not base64url") from exc
        ephemeral = raw[:_KEY_BYTES]
        nonce = raw[_KEY_BYTES : _KEY_BYTES + _NONCE_BYTES]
        if len(ephemeral) != _KEY_BYTES or len(nonce) != _NONCE_BYTES:
            raise SealError("the sealed code is truncated")
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral))
            clear = _derive(shared, ephemeral, recipient).decrypt(
                nonce, raw[_KEY_BYTES + _NONCE_BYTES :], code_id.bytes
            )
        except (InvalidTag, ValueError) as exc:
            raise SealError("the sealed code does not open (tampered, or sealed for another code)") from exc
        return SecretStr(clear.decode())

    def __repr__(self) -> str:
        return f"CodeOpener(key_ids={list(self._keys)})"


def new_key_pair(key_id: str) -> tuple[str, str]:
    """A fresh (private key, public key), each written `<key id>:<base64>`."""
    private = X25519PrivateKey.generate()
    return _written(
        key_id, private
    ), f"{key_id}:{base64.b64encode(_raw_public(private.public_key())).decode()}"


def public_key_of(private_key: str) -> str:
    """The public key (`<key id>:<base64>`) matching a private key written the same way."""
    key_id, raw = _parse_key(private_key, "seal private key")
    public = X25519PrivateKey.from_private_bytes(raw).public_key()
    return f"{key_id}:{base64.b64encode(_raw_public(public)).decode()}"


def dev_key_pair() -> tuple[str, str]:
    """The development key pair: derived from a public string, so anyone can open what it seals.
    Production refuses both halves (chassis.production.secret_setting)."""
    raw = hashlib.sha256(b"orchard-local-dev-seal-key").digest()
    private = f"dev1:{base64.b64encode(raw).decode()}"
    return private, public_key_of(private)


def _written(key_id: str, private: X25519PrivateKey) -> str:
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return f"{key_id}:{base64.b64encode(raw).decode()}"


def dev_sealer() -> CodeSealer:
    """A sealer under the development public key, as a dev-mode voucher service has (tests, demos)."""
    return CodeSealer(dev_key_pair()[1])

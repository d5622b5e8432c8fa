"""Voucher codes held for sending, encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The clear code exists only in memory while a message is rendered. The ciphertext is kept so support
can resend a delivered voucher, and dropped when the order is cancelled or `code_retention_days` after
the delivery succeeded.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr


class CodeVault:
    def __init__(self, key: SecretStr) -> None:
        self._fernet = Fernet(key.get_secret_value().encode())

    def seal(self, code: SecretStr) -> bytes:
        return self._fernet.encrypt(code.get_secret_value().encode())

    def open(self, sealed: bytes) -> SecretStr:
        try:
            return SecretStr(self._fernet.decrypt(sealed).decode())
        except InvalidToken as exc:
            raise ValueError("the held code cannot be decrypted with the configured key") from exc

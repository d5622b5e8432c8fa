"""The voucher service's own settings: code encryption and lookup keys, job intervals."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal

from pydantic import Field, SecretStr

from chassis.production import secret_setting
from chassis.sealed_codes import dev_key_pair
from chassis.settings import Settings


def _dev_key(label: str) -> str:
    # A fixed, clearly non-production key so `orchard up` works without configuration.
    return base64.b64encode(hashlib.sha256(f"orchard-local-dev-{label}".encode()).digest()).decode()


DEV_ENCRYPTION_KEYS = f"dev1:{_dev_key('voucher-encryption')}"
DEV_LOOKUP_KEY = _dev_key("voucher-lookup")
DEV_SEAL_PUBLIC_KEY = dev_key_pair()[1]


class VoucherSettings(Settings):
    """`ORCHARD_VOUCHER_ENCRYPTION_KEYS` is `id:base64key,id:base64key` (32-byte AES keys); new codes are
    encrypted under `ORCHARD_VOUCHER_ACTIVE_KEY_ID` (default: the first), older keys stay for reading.
    `ORCHARD_VOUCHER_SEAL_PUBLIC_KEY` is the delivery service's public key (`id:base64`, X25519) that
    each issued code is sealed under for `voucher.issued`; this service cannot open what it seals.
    """

    service_name: str = Field(default="voucher", alias="ORCHARD_SERVICE")
    encryption_keys: SecretStr = secret_setting(DEV_ENCRYPTION_KEYS, "ORCHARD_VOUCHER_ENCRYPTION_KEYS")
    active_key_id: str | None = Field(default=None, alias="ORCHARD_VOUCHER_ACTIVE_KEY_ID")
    lookup_key: SecretStr = secret_setting(DEV_LOOKUP_KEY, "ORCHARD_VOUCHER_LOOKUP_KEY")
    seal_public_key: SecretStr = secret_setting(DEV_SEAL_PUBLIC_KEY, "ORCHARD_VOUCHER_SEAL_PUBLIC_KEY")
    expiry_interval_s: float = Field(default=60.0, alias="ORCHARD_VOUCHER_EXPIRY_INTERVAL")
    hold_interval_s: float = Field(default=2.0, alias="ORCHARD_VOUCHER_HOLD_INTERVAL")
    budget_alert_ratio: Decimal = Field(
        default=Decimal("0.9"), gt=0, le=1, alias="ORCHARD_VOUCHER_BUDGET_ALERT_RATIO"
    )
    """A campaign that has used this share of its budget is told once (campaign.activity)."""
    budget_alert_interval_s: float = Field(default=60.0, gt=0, alias="ORCHARD_VOUCHER_BUDGET_ALERT_INTERVAL")
    max_codes_per_request: int = Field(default=1_000_000, ge=1, alias="ORCHARD_VOUCHER_MAX_CODES_PER_REQUEST")
    """A generation request asking for more codes is answered 422 (`body.count`): split it."""
    generation_chunk: int = Field(default=20_000, ge=1, alias="ORCHARD_VOUCHER_GENERATION_CHUNK")
    """Codes drawn, sealed and copied at a time; memory of a generation is that of one chunk."""
    budget_approval_above: Decimal = Field(
        default=Decimal(0), ge=0, alias="ORCHARD_VOUCHER_BUDGET_APPROVAL_ABOVE"
    )
    """A campaign budget raised by more than this (or lifted altogether) waits for a second person."""
    recovery_approval_above: int = Field(default=100, ge=0, alias="ORCHARD_VOUCHER_RECOVERY_APPROVAL_ABOVE")
    """A recovery taking back more codes than this waits for a second person's approval."""
    reveals_per_minute: int = Field(default=30, ge=1, alias="ORCHARD_VOUCHER_REVEALS_PER_MINUTE")
    """Reveals one actor (token `sub`) may make per clock minute, counted across every replica."""

"""The wallet's settings: the chassis' plus its expiry policy, from the environment."""

from __future__ import annotations

from pydantic import Field

from chassis.settings import Settings


class WalletSettings(Settings):
    service_name: str = Field(default="wallet", alias="ORCHARD_SERVICE")
    points_expiry_months: int = Field(default=12, ge=0, alias="WALLET_POINTS_EXPIRY_MONTHS")
    """Points expire this many months after they were earned; 0: never."""
    expiring_soon_days: int = Field(default=30, ge=1, alias="WALLET_EXPIRING_SOON_DAYS")
    expiry_job_interval_s: float = Field(default=300.0, gt=0, alias="WALLET_EXPIRY_JOB_INTERVAL")
    expiry_batch_members: int = Field(default=200, ge=1, alias="WALLET_EXPIRY_BATCH_MEMBERS")
    expiry_warning_days: int = Field(default=14, ge=1, le=366, alias="WALLET_EXPIRY_WARNING_DAYS")
    """Members are told once per expiry day when points expire within this many days."""
    expiry_warning_interval_s: float = Field(default=3600.0, gt=0, alias="WALLET_EXPIRY_WARNING_INTERVAL")
    adjustment_approval_above: int = Field(default=10_000, ge=0, alias="WALLET_ADJUSTMENT_APPROVAL_ABOVE")
    """A staff adjustment or reversal of more points than this waits for a second person's approval."""

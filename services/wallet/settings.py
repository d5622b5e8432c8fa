"""The wallet's settings: the chassis' plus its expiry policy, from the environment."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, TypeAdapter, field_validator
from pydantic_settings import SettingsConfigDict

from chassis.settings import Settings
from contracts.values import Email

_EMAIL = TypeAdapter(Email)


class WalletSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="ORCHARD_WALLET_", extra="ignore", case_sensitive=False)
    legacy_env_prefixes: ClassVar[tuple[str, ...]] = ("WALLET_",)

    service_name: str = Field(default="wallet", alias="ORCHARD_SERVICE")
    points_expiry_months: int = Field(default=12, ge=0, alias="ORCHARD_WALLET_POINTS_EXPIRY_MONTHS")
    """Points expire this many months after they were earned; 0: never."""
    expiring_soon_days: int = Field(default=30, ge=1, alias="ORCHARD_WALLET_EXPIRING_SOON_DAYS")
    expiry_job_interval_s: float = Field(default=300.0, gt=0, alias="ORCHARD_WALLET_EXPIRY_JOB_INTERVAL")
    expiry_batch_members: int = Field(default=200, ge=1, alias="ORCHARD_WALLET_EXPIRY_BATCH_MEMBERS")
    expiry_warning_days: int = Field(default=14, ge=1, le=366, alias="ORCHARD_WALLET_EXPIRY_WARNING_DAYS")
    """Members are told once per expiry day when points expire within this many days."""
    expiry_warning_interval_s: float = Field(
        default=3600.0, gt=0, alias="ORCHARD_WALLET_EXPIRY_WARNING_INTERVAL"
    )
    adjustment_approval_above: int = Field(
        default=10_000, ge=0, alias="ORCHARD_WALLET_ADJUSTMENT_APPROVAL_ABOVE"
    )
    """A staff adjustment or reversal of more points than this waits for a second person's approval."""
    finance_report_emails: str = Field(default="", alias="ORCHARD_WALLET_FINANCE_REPORT_EMAILS")
    """Comma-separated addresses of the finance distribution list that gets each month's
    reconciliation by e-mail; empty: none is sent."""
    reconciliation_interval_s: float = Field(
        default=3600.0, gt=0, alias="ORCHARD_WALLET_RECONCILIATION_INTERVAL"
    )
    """How often the reconciliation job looks for a month that has ended and was not sent yet."""

    @field_validator("finance_report_emails")
    @classmethod
    def _addresses(cls, value: str) -> str:
        for address in (a.strip() for a in value.split(",") if a.strip()):
            _EMAIL.validate_python(address)
        return value

    @property
    def finance_recipients(self) -> list[str]:
        return [a.strip() for a in self.finance_report_emails.split(",") if a.strip()]

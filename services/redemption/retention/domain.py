"""Retention rules: per record type, how long records are kept and what happens after. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class RetentionAction(StrEnum):
    PURGE = "purge"
    ANONYMISE = "anonymise"


@dataclass(frozen=True)
class RetentionRule:
    record_type: str
    """`offer`, `voucher`, `storefront` (redemption records), `otp_challenge` or `export`."""
    days: int
    action: RetentionAction

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError(f"{self.record_type}: retention is at least one day")

    def cutoff(self, now: datetime) -> datetime:
        """Records from before this instant are past retention."""
        return now - timedelta(days=self.days)


RECORD_KINDS = ("offer", "voucher", "storefront")

"""A redemption record (offer, voucher or storefront) and the rules of dashboards over them."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from chassis.rows import from_row
from contracts.redemption import RedemptionKind, RedemptionRecorded, RedemptionStatus, ValidationMethod


@dataclass(frozen=True)
class Record:
    record_id: uuid.UUID
    kind: RedemptionKind
    status: RedemptionStatus
    redeemed_at: datetime
    member_id: str | None = None
    segment_token: str | None = None
    offer_id: str | None = None
    partner_id: str | None = None
    code_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    redemption_id: uuid.UUID | None = None
    channel: str | None = None
    location: str | None = None
    validation_method: ValidationMethod | None = None
    amount: Decimal | None = None
    currency: str | None = None
    points: int | None = None
    partial: bool = False
    reason: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Record:
        method = row["validation_method"]
        return from_row(
            cls,
            row,
            kind=RedemptionKind(row["kind"]),
            status=RedemptionStatus(row["status"]),
            validation_method=ValidationMethod(method) if method is not None else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_event(self) -> RedemptionRecorded:
        data = {k: v for k, v in self.as_dict().items() if v is not None}
        return RedemptionRecorded(**data)

    @property
    def day(self) -> date:
        return self.redeemed_at.astimezone(UTC).date()

    def bucket(self) -> tuple[date, str, str, str, str, str, str]:
        """The daily aggregate this record counts in."""
        return (
            self.day,
            str(self.kind),
            str(self.status),
            self.partner_id or "",
            self.offer_id or "",
            self.channel or "",
            self.segment_token or "",
        )


OFFER_CHANNELS = ("in_store", "online", "app")

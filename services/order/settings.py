"""The order service's settings: the shared ones plus IPA intake limits (env prefix ORCHARD_ORDER_)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from chassis.settings import Settings


class OrderSettings(Settings):
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, alias="ORCHARD_ORDER_MAX_UPLOAD_BYTES")
    """The largest IPA upload accepted (CSV or JSON); larger ones get 413."""
    max_json_bytes: int = Field(default=32 * 1024 * 1024, alias="ORCHARD_ORDER_MAX_JSON_BYTES")
    """The largest JSON `records` upload (parsed whole, unlike streamed CSV); larger gets 413."""
    ipa_chunk_rows: int = Field(default=2000, alias="ORCHARD_ORDER_IPA_CHUNK_ROWS", ge=1)
    ipa_poll_s: float = Field(default=1.0, alias="ORCHARD_ORDER_IPA_POLL_S", gt=0)
    ipa_stale_claim_s: float = Field(default=60.0, alias="ORCHARD_ORDER_IPA_STALE_CLAIM_S")
    """A batch whose worker made no progress for this long is taken over by another replica."""
    ipa_approval_rows_above: int = Field(default=1000, ge=0, alias="ORCHARD_ORDER_IPA_APPROVAL_ROWS_ABOVE")
    """An uploaded batch with more records waits for a second person's approval."""
    ipa_approval_total_above: Decimal = Field(
        default=Decimal(100_000), ge=0, alias="ORCHARD_ORDER_IPA_APPROVAL_TOTAL_ABOVE"
    )
    """An uploaded batch whose amounts add up to more waits for a second person's approval."""
    bulk_cancel_max_orders: int = Field(default=10_000, ge=1, alias="ORCHARD_ORDER_BULK_CANCEL_MAX_ORDERS")
    """A bulk cancel whose filters match more orders is refused (422): narrow the filters."""
    bulk_cancel_approval_above: int = Field(
        default=500, ge=0, alias="ORCHARD_ORDER_BULK_CANCEL_APPROVAL_ABOVE"
    )
    """A bulk cancel of more pending orders waits for a second person's approval."""

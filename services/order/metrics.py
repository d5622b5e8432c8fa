"""The order service's own Prometheus metrics (served on the chassis's `/metrics`)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter

IPA_RECORDS: Final = Counter(
    "orchard_ipa_records_total", "IPA records judged, by way in and outcome", ["source", "outcome"]
)
ORDER_EVENTS: Final = Counter(
    "orchard_order_events_total",
    "Events met by orders, by event and what became of them (applied, stale, late)",
    ["event", "outcome"],
)

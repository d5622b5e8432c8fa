"""The monthly reconciliation's month, its messages and the distribution list setting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from services.wallet.reconciliation import month_just_ended, reconciliation_message
from services.wallet.settings import WalletSettings

SUMMARY = {
    "month": "2030-02",
    "opening_points": "10",
    "earned": "5",
    "refunded": "0",
    "burned": "0",
    "expired": "0",
    "adjusted_credit": "0",
    "adjusted_debit": "0",
    "adjusted_net": "0",
    "closing_points": "15",
    "reconciles": True,
}


@pytest.mark.parametrize(
    ("now", "month"),
    [
        (datetime(2030, 3, 1, 0, 0, tzinfo=UTC), "2030-02"),
        (datetime(2030, 3, 31, 23, 59, tzinfo=UTC), "2030-02"),
        (datetime(2030, 1, 1, 0, 0, tzinfo=UTC), "2029-12"),
    ],
)
def test_the_month_just_ended_is_the_one_before_the_current(now: datetime, month: str) -> None:
    assert month_just_ended(now) == month


def test_each_address_gets_one_message_per_month_whatever_its_case() -> None:
    first = reconciliation_message(SUMMARY, "Finance@Example.com")
    again = reconciliation_message(SUMMARY, "finance@example.com")
    other = reconciliation_message(SUMMARY, "controller@example.com")

    assert first.message_id == again.message_id != other.message_id
    assert (first.template, first.params["reconciles"], first.params["closing_points"]) == (
        "monthly_reconciliation",
        "yes",
        "15",
    )


def test_the_distribution_list_is_read_as_addresses_and_a_bad_one_is_refused() -> None:
    settings = WalletSettings(ORCHARD_WALLET_FINANCE_REPORT_EMAILS=" a@example.com, b@example.com ,")

    assert settings.finance_recipients == ["a@example.com", "b@example.com"]
    assert WalletSettings().finance_recipients == []
    with pytest.raises(ValidationError, match="ORCHARD_WALLET_FINANCE_REPORT_EMAILS"):
        WalletSettings(ORCHARD_WALLET_FINANCE_REPORT_EMAILS="a@example.com, not-an-address")

"""Amounts in answers carry exactly their currency's decimal places."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chassis.money import minor_units, money_text, with_money_text


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        ("25.0000", "EUR", "25.00"),
        ("25", "EUR", "25.00"),
        ("2500.0000", "JPY", "2500"),
        ("1200", None, "1200"),
        ("1200.0000", "PTS", "1200"),
        ("1.5", "KWD", "1.500"),
        ("1E+2", "USD", "100.00"),
        ("0", "EUR", "0.00"),
    ],
)
def test_an_amount_is_written_with_its_currencys_minor_units(
    amount: str, currency: str | None, shown: str
) -> None:
    assert money_text(Decimal(amount), currency) == shown


def test_an_amount_finer_than_its_currency_keeps_its_digits_rather_than_being_rounded() -> None:
    assert money_text(Decimal("10.0050"), "EUR") == "10.005"


def test_only_the_named_fields_of_a_row_are_written_in_its_currency() -> None:
    row = {"amount": Decimal("2500.0000"), "currency": "JPY", "points": 7, "budget": None}

    assert with_money_text(row, "amount", "budget") == {
        "amount": "2500",
        "currency": "JPY",
        "points": 7,
        "budget": None,
    }
    assert with_money_text({"value": Decimal("5.0000")}, "value", currency="EUR") == {"value": "5.00"}


@given(
    cents=st.integers(min_value=-(10**14), max_value=10**14),
    currency=st.sampled_from(["EUR", "JPY", "KWD", "PTS", "GBP", "CLF"]),
)
def test_a_representable_amount_round_trips_with_exactly_the_currencys_places(
    cents: int, currency: str
) -> None:
    places = minor_units(currency)
    amount = Decimal(cents).scaleb(-places)
    shown = money_text(amount.quantize(Decimal("0.0001")), currency)

    assert shown is not None
    assert Decimal(shown) == amount
    assert len(shown.partition(".")[2]) == places

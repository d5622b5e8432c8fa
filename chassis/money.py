"""Money in answers: a decimal string with exactly its currency's decimal places (ISO 4217 minor units).

EUR 25 is "25.00", JPY 2500 is "2500", KWD 1.5 is "1.500", points (`PTS`, or no currency) are whole:
"1200". The database keeps four places ("25.0000"); answers never show them. A stored amount finer
than its currency allows (which validation keeps out) is shown with its real digits rather than
rounded, so an answer never misstates money.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Final

import asyncpg
from pydantic import Field

from contracts.values import POINTS_CURRENCY

# ISO 4217 minor units where they are not 2 (currencies contracts.values.Currency admits: any three
# capitals; an unknown code is given the common 2).
_ZERO_DECIMALS: Final = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
_THREE_DECIMALS: Final = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])
_FOUR_DECIMALS: Final = frozenset({"CLF", "UYW"})

MONEY_PATTERN: Final = r"^-?[0-9]+(\.[0-9]+)?$"
MoneyText = Annotated[
    str,
    Field(
        pattern=MONEY_PATTERN,
        description="decimal string with exactly the currency's minor units: EUR '25.00', JPY '2500',"
        " points '1200'",
        examples=["25.00"],
    ),
]
"""An amount in an answer, written by `money_text`."""


def minor_units(currency: str | None) -> int:
    """Decimal places of the currency (ISO 4217 exponent); points and a missing currency: 0."""
    if currency is None or currency == POINTS_CURRENCY:
        return 0
    if currency in _ZERO_DECIMALS:
        return 0
    if currency in _THREE_DECIMALS:
        return 3
    if currency in _FOUR_DECIMALS:
        return 4
    return 2


def money_text(amount: Decimal | int | str | None, currency: str | None) -> str | None:
    """`amount` with exactly `currency`'s decimal places (None stays None)."""
    if amount is None:
        return None
    value = Decimal(amount)
    exact = value.quantize(Decimal(1).scaleb(-minor_units(currency)))
    if exact != value:
        return format(value.normalize(), "f")
    return format(exact, "f")


def with_money_text(
    row: Mapping[str, Any] | asyncpg.Record,
    *fields: str,
    currency: str | None = None,
    currency_field: str = "currency",
) -> dict[str, Any]:
    """A copy of `row` with each of `fields` written by `money_text` in the row's currency (or the
    `currency` given, for rows that do not carry one)."""
    shown = dict(row)
    in_currency = currency if currency is not None else row.get(currency_field)
    for name in fields:
        if name in shown:
            shown[name] = money_text(shown[name], in_currency)
    return shown

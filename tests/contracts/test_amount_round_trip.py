"""Money and points survive the wire exactly: same value, same scale, always a string."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.envelope import Envelope
from contracts.topics import Topics
from contracts.vouchers import VoucherRedeemed
from contracts.wallet import WalletTransactionRecorded
from tests.contracts.samples import sample_payloads

# Units and a scale, so trailing zeros ('15.00') and positive exponents ('1E+2') both occur.
_money = st.builds(
    lambda units, scale: Decimal(units).scaleb(-scale),
    st.integers(min_value=1, max_value=10**18 - 1),
    st.integers(min_value=-2, max_value=4),
)
_points = st.integers(min_value=1, max_value=10**18)


_SAMPLES = sample_payloads()


def _redeemed(amount: object, remaining: Decimal | str) -> VoucherRedeemed:
    """The sample redemption with these amounts."""
    sample = _SAMPLES[Topics.VOUCHER_REDEEMED].model_dump()
    changed = {"amount": amount, "remaining_value": remaining, "partial": Decimal(remaining) > 0}
    return VoucherRedeemed.model_validate(sample | changed)


def _recorded(amount: object, balance: object) -> WalletTransactionRecorded:
    """The sample ledger entry with these points."""
    sample = _SAMPLES[Topics.WALLET_TRANSACTION_RECORDED].model_dump()
    return WalletTransactionRecorded.model_validate(sample | {"amount": amount, "balance_after": balance})


@given(amount=_money, remaining=_money)
def test_money_survives_the_wire_with_its_exact_digits(amount: Decimal, remaining: Decimal) -> None:
    sent = Envelope.new(
        event_type=Topics.VOUCHER_REDEEMED, producer="voucher", data=_redeemed(amount, remaining)
    )
    wire = json.loads(sent.to_bytes())["data"]
    assert wire["amount"] == format(amount, "f")
    assert isinstance(wire["remaining_value"], str)
    received = Envelope.decode(sent.to_bytes(), VoucherRedeemed).data
    assert received.amount == amount
    assert format(received.amount, "f") == format(amount, "f")
    assert format(received.remaining_value, "f") == format(remaining, "f")


@given(text=st.from_regex(r"\A[1-9][0-9]{0,13}(\.[0-9]{1,4})?\Z"))
def test_a_decimal_string_comes_back_character_for_character(text: str) -> None:
    sent = Envelope.new(event_type=Topics.VOUCHER_REDEEMED, producer="voucher", data=_redeemed(text, "0"))
    assert json.loads(sent.to_bytes())["data"]["amount"] == text
    assert format(Envelope.decode(sent.to_bytes(), VoucherRedeemed).data.amount, "f") == text


@given(amount=_points, balance=_points)
def test_points_travel_as_integer_strings(amount: int, balance: int) -> None:
    sent = Envelope.new(
        event_type=Topics.WALLET_TRANSACTION_RECORDED, producer="wallet", data=_recorded(amount, balance)
    )
    wire = json.loads(sent.to_bytes())["data"]
    assert (wire["amount"], wire["balance_after"]) == (str(amount), str(balance))
    received = Envelope.decode(sent.to_bytes(), WalletTransactionRecorded).data
    assert (received.amount, received.balance_after) == (amount, balance)


@pytest.mark.parametrize("amount", [12.5, True, "12,50", "1e3", " 12.50", "NaN", "Infinity", "12.00001"])
def test_money_that_is_not_an_exact_decimal_string_is_refused(amount: object) -> None:
    with pytest.raises(ValidationError):
        _redeemed(amount, "0")


@pytest.mark.parametrize("points", [12.0, "12.5", "1e3", "", False])
def test_points_that_are_not_whole_numbers_are_refused(points: object) -> None:
    with pytest.raises(ValidationError):
        _recorded(points, 0)


def test_amounts_must_be_positive_where_the_contract_says_so() -> None:
    with pytest.raises(ValidationError):
        _redeemed("0", "0")
    with pytest.raises(ValidationError):
        _recorded(0, 0)
    with pytest.raises(ValidationError):
        _recorded(5, -1)

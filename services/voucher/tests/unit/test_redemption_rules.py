"""Redemption decisions: reasons for refusal, partial value, never more than what is left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.vouchers import CodeStatus
from services.voucher.domain import (
    CodeForRedemption,
    RedemptionRefused,
    Refusal,
    decide_redemption,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def code(status=CodeStatus.ISSUED, remaining="25.00", test=False, expires_at=None) -> CodeForRedemption:
    return CodeForRedemption(
        status=status, test=test, remaining_value=Decimal(remaining), expires_at=expires_at
    )


def refusal(c: CodeForRedemption, amount=None, allow_partial=True, test_mode=False) -> Refusal:
    with pytest.raises(RedemptionRefused) as info:
        decide_redemption(c, amount=amount, allow_partial=allow_partial, test_mode=test_mode, now=NOW)
    return info.value.reason


def test_each_unusable_code_is_refused_with_its_reason():
    assert refusal(code(CodeStatus.FLAGGED)) is Refusal.FLAGGED
    assert refusal(code(CodeStatus.EXPIRED)) is Refusal.EXPIRED
    assert refusal(code(expires_at=NOW - timedelta(seconds=1))) is Refusal.EXPIRED
    assert refusal(code(CodeStatus.REDEEMED, remaining="0")) is Refusal.FULLY_REDEEMED
    assert refusal(code(CodeStatus.AVAILABLE)) is Refusal.NOT_ISSUED
    assert refusal(code(CodeStatus.RECOVERED)) is Refusal.NOT_ISSUED
    assert refusal(code(CodeStatus.AVAILABLE, test=True)) is Refusal.TEST_CODE_IN_LIVE
    assert refusal(code(), test_mode=True) is Refusal.LIVE_CODE_IN_TEST
    assert refusal(code(), amount=Decimal("30")) is Refusal.AMOUNT_EXCEEDS_REMAINING
    assert refusal(code(), amount=Decimal("5"), allow_partial=False) is Refusal.PARTIAL_NOT_ALLOWED


def test_a_test_code_redeems_in_test_mode():
    decision = decide_redemption(
        code(CodeStatus.AVAILABLE, test=True), amount=None, allow_partial=True, test_mode=True, now=NOW
    )
    assert decision.status is CodeStatus.REDEEMED


@given(
    remaining=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000"), places=2),
    amounts=st.lists(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("300"), places=2), max_size=20),
)
def test_successive_redemptions_never_take_more_than_the_value(remaining, amounts):
    left = remaining
    taken = Decimal(0)
    status = CodeStatus.ISSUED
    for amount in amounts:
        current = code(status, str(left))
        try:
            decision = decide_redemption(current, amount=amount, allow_partial=True, test_mode=False, now=NOW)
        except RedemptionRefused:
            continue
        assert decision.amount == amount
        taken += decision.amount
        left = decision.remaining_value
        status = decision.status
        assert decision.partial == (left > 0)
    assert taken + left == remaining
    assert left >= 0

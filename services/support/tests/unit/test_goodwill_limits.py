"""Goodwill limits per role: per adjustment and per agent per day; a ticket or a reason is required."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.support.domain.goodwill import (
    GoodwillLimit,
    GoodwillLimitExceeded,
    GoodwillNotAllowed,
    JustificationRequired,
    check_goodwill,
    most_generous,
    require_justification,
)
from services.support.settings import SupportSettings

AGENT = GoodwillLimit(per_adjustment=500, per_day=2000)


@given(st.lists(st.integers(min_value=1, max_value=800), max_size=30))
def test_an_agent_never_grants_more_than_the_limits_allow(requests):
    granted = 0
    for points in requests:
        try:
            check_goodwill(AGENT, points=points, granted_today=granted)
        except GoodwillLimitExceeded:
            assert points > 500 or granted + points > 2000
            continue
        granted += points
        assert points <= 500
    assert granted <= 2000


def test_the_refusal_says_how_much_is_left_today():
    with pytest.raises(GoodwillLimitExceeded, match=r"daily limit of 2000 \(100 left today\)"):
        check_goodwill(AGENT, points=200, granted_today=1900)


def test_a_caller_gets_the_most_generous_limit_of_their_roles():
    limits = {"support_agent": AGENT, "admin": GoodwillLimit(10000, 50000)}
    assert most_generous(limits, ["support_agent", "admin"]).per_day == 50000
    with pytest.raises(GoodwillNotAllowed):
        most_generous(limits, ["auditor"])


@pytest.mark.parametrize(("ticket_id", "reason"), [(None, None), (None, "   "), ("", "")])
def test_an_action_without_ticket_or_reason_is_refused(ticket_id, reason):
    with pytest.raises(JustificationRequired):
        require_justification(ticket_id, reason)


def test_a_ticket_or_a_reason_is_enough():
    require_justification("TK-1", None)
    require_justification(None, "member called")


def test_limits_for_a_role_that_does_not_exist_are_refused_at_startup():
    with pytest.raises(ValueError, match="unknown role"):
        SupportSettings(ORCHARD_SUPPORT_GOODWILL_LIMITS={"agent": {"per_adjustment": 5, "per_day": 10}})


def test_limits_come_from_the_environment_per_role():
    settings = SupportSettings(ORCHARD_SUPPORT_GOODWILL_LIMITS={"ops": {"per_adjustment": 5, "per_day": 10}})
    assert settings.goodwill_limit_table() == {"ops": GoodwillLimit(5, 10)}

"""Reporting periods: defaults filled in, bounded, refused naming `from`, split into UTC hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from chassis.periods import bounded_period, hour_starts
from chassis.problems import Problem

DAY = timedelta(days=1)
START = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_a_period_without_from_reaches_back_the_default_from_to_and_is_answered_in_utc() -> None:
    until = datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    assert bounded_period(None, until, default=DAY, longest=31 * DAY) == (
        datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("until", "code"),
    [(START, "after_to"), (START - DAY, "after_to"), (START + 31 * DAY + DAY, "range_too_long")],
)
def test_an_empty_upside_down_or_too_long_period_is_refused_naming_from(until: datetime, code: str) -> None:
    with pytest.raises(Problem) as refused:
        bounded_period(START, until, default=DAY, longest=31 * DAY)

    assert refused.value.status == 422
    assert [(e["field"], e["code"]) for e in refused.value.errors or []] == [("query.from", code)]


def test_a_period_is_split_into_every_utc_hour_it_touches() -> None:
    hours = hour_starts(START, START + timedelta(hours=2))

    assert [h.strftime("%H:%M") for h in hours] == ["09:00", "10:00", "11:00"]

"""SLA arithmetic under a controlled clock: business hours, holidays, time zones, pauses, alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.support import SlaAlertKind, SlaTarget, TicketCategory, TicketPriority
from services.support.domain.sla import (
    BusinessCalendar,
    NoSlaPolicy,
    Pause,
    SlaConfigError,
    SlaPhase,
    SlaPolicy,
    add_working_seconds,
    alerts_due,
    choose_policy,
    due_at,
    elapsed_seconds,
    evaluate_target,
    next_check_at,
    working_seconds,
)

HOUR = 3600
# Monday 2026-11-23; the calendar works Monday to Friday 09:00-17:00 UTC.
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)
OFFICE = BusinessCalendar("office", holidays=frozenset({date(2026, 11, 26)}))  # Thursday off


def at(day_offset: int, hour: float) -> datetime:
    return MONDAY + timedelta(days=day_offset, hours=hour)


def test_working_seconds_count_only_office_hours():
    assert working_seconds(OFFICE, at(0, 8), at(0, 18)) == 8 * HOUR
    assert working_seconds(OFFICE, at(0, 16), at(1, 10)) == 2 * HOUR
    assert working_seconds(OFFICE, at(4, 16), at(7, 10)) == 2 * HOUR  # Friday 16:00 to Monday 10:00


def test_holidays_do_not_count():
    assert working_seconds(OFFICE, at(2, 16), at(4, 10)) == 2 * HOUR  # Wednesday to Friday over Thursday


def test_a_target_set_on_friday_afternoon_falls_due_on_monday():
    assert add_working_seconds(OFFICE, at(4, 15), 4 * HOUR) == at(7, 11)


def test_a_target_opened_before_hours_starts_counting_at_nine():
    assert add_working_seconds(OFFICE, at(0, 6), HOUR) == at(0, 10)


def test_without_a_calendar_every_second_counts():
    assert add_working_seconds(None, at(5, 23), 2 * HOUR) == at(6, 1)
    assert working_seconds(None, at(5, 23), at(6, 1)) == 2 * HOUR


def test_business_hours_follow_the_calendars_time_zone():
    berlin = BusinessCalendar("berlin", timezone="Europe/Berlin")
    # 09:00 in Berlin in November is 08:00 UTC.
    assert add_working_seconds(berlin, at(0, 0), HOUR) == at(0, 9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"working_days": frozenset()}, "working_days"),
        ({"working_days": frozenset({8})}, "working_days"),
        ({"day_start": time(17), "day_end": time(9)}, "day_start"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
    ],
)
def test_an_unusable_calendar_is_refused(kwargs, message):
    with pytest.raises(SlaConfigError, match=message):
        BusinessCalendar("bad", **kwargs)


@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ),
    seconds=st.integers(min_value=1, max_value=200 * HOUR),
)
def test_adding_working_seconds_is_the_inverse_of_counting_them(start, seconds):
    due = add_working_seconds(OFFICE, start, seconds)
    assert working_seconds(OFFICE, start, due) == pytest.approx(seconds, abs=1e-3)


@given(
    opened=st.integers(min_value=0, max_value=100 * HOUR),
    gaps=st.lists(st.tuples(st.integers(1, 20 * HOUR), st.integers(1, 20 * HOUR)), max_size=4),
    budget=st.integers(min_value=1, max_value=60 * HOUR),
)
def test_the_due_time_is_when_the_paused_clock_reaches_the_budget(opened, gaps, budget):
    opened_at = MONDAY + timedelta(seconds=opened)
    pauses, cursor = [], opened_at
    for run, paused in gaps:
        start = cursor + timedelta(seconds=run)
        pauses.append(Pause(start, start + timedelta(seconds=paused)))
        cursor = start + timedelta(seconds=paused)
    due = due_at(OFFICE, opened_at, pauses, budget)
    assert due is not None
    assert elapsed_seconds(OFFICE, opened_at, pauses, due) == pytest.approx(budget, abs=1e-3)


def test_the_clock_stands_still_while_waiting_on_the_customer():
    pauses = [Pause(at(0, 10), at(0, 14))]
    assert elapsed_seconds(OFFICE, at(0, 9), pauses, at(0, 15)) == 2 * HOUR
    assert due_at(OFFICE, at(0, 9), pauses, 4 * HOUR) == at(0, 17)


def test_no_due_time_while_paused_before_the_budget_is_spent():
    assert due_at(OFFICE, at(0, 9), [Pause(at(0, 10))], 4 * HOUR) is None


def test_a_pause_after_the_breach_keeps_the_past_due_time():
    assert due_at(OFFICE, at(0, 9), [Pause(at(0, 12))], 2 * HOUR) == at(0, 11)


def status(now: datetime, *, pauses=(), met_at=None, target_s=4 * HOUR):
    return evaluate_target(
        SlaTarget.RESOLUTION,
        target_s=target_s,
        calendar=OFFICE,
        opened_at=at(0, 9),
        pauses=list(pauses),
        met_at=met_at,
        now=now,
        warning_share=0.8,
    )


def test_a_target_warns_at_eighty_percent_and_breaches_at_its_due_time():
    assert status(at(0, 12)).phase is SlaPhase.ON_TRACK
    warning = status(at(0, 12.2))
    assert warning.phase is SlaPhase.WARNING
    assert warning.warn_at == at(0, 12.2)
    assert warning.due_at == at(0, 13)
    breached = status(at(0, 14))
    assert breached.phase is SlaPhase.BREACHED
    assert breached.seconds_left == -HOUR


def test_overnight_is_not_overdue_time():
    assert status(at(1, 9)).seconds_left == -4 * HOUR


def test_a_paused_ticket_does_not_move_towards_its_breach():
    paused = status(at(0, 16), pauses=[Pause(at(0, 10))])
    assert paused.phase is SlaPhase.ON_TRACK
    assert paused.paused
    assert paused.seconds_left == 3 * HOUR
    assert paused.due_at is None


def test_a_met_target_is_judged_at_the_moment_it_was_met():
    assert status(at(5, 9), met_at=at(0, 12)).phase is SlaPhase.MET
    assert status(at(5, 9), met_at=at(0, 14)).phase is SlaPhase.MISSED


def test_alerts_come_once_each_warning_then_breach():
    warning = status(at(0, 12.5))
    assert alerts_due(warning, []) == [SlaAlertKind.WARNING]
    assert alerts_due(warning, [SlaAlertKind.WARNING]) == []
    breached = status(at(0, 13.5))
    assert alerts_due(breached, [SlaAlertKind.WARNING]) == [SlaAlertKind.BREACH]
    assert alerts_due(breached, []) == [SlaAlertKind.BREACH]
    assert alerts_due(breached, [SlaAlertKind.WARNING, SlaAlertKind.BREACH]) == []
    assert alerts_due(status(at(0, 14), met_at=at(0, 12)), []) == []


def test_the_monitor_next_looks_at_the_warning_then_at_the_due_time():
    now = at(0, 10)
    on_track = status(now)
    assert next_check_at([on_track], {}, now=now) == at(0, 12.2)
    assert next_check_at([on_track], {SlaTarget.RESOLUTION: [SlaAlertKind.WARNING]}, now=now) == at(0, 13)
    assert next_check_at([status(now, pauses=[Pause(at(0, 9.5))])], {}, now=now) is None
    overdue = status(at(0, 14))
    assert next_check_at([overdue], {}, now=at(0, 14)) == at(0, 14)


def test_a_category_policy_wins_over_the_priority_one():
    general = SlaPolicy(TicketPriority.HIGH, 3600, 28800)
    missing = SlaPolicy(TicketPriority.HIGH, 600, 7200, category=TicketCategory.MISSING_DELIVERY)
    assert choose_policy([general, missing], TicketPriority.HIGH, TicketCategory.MISSING_DELIVERY) is missing
    assert choose_policy([general, missing], TicketPriority.HIGH, TicketCategory.OTHER) is general
    with pytest.raises(NoSlaPolicy):
        choose_policy([general], TicketPriority.LOW, TicketCategory.OTHER)


def test_a_policy_whose_first_response_outlasts_resolution_is_refused():
    with pytest.raises(SlaConfigError):
        SlaPolicy(TicketPriority.LOW, 7200, 3600)

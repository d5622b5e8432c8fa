"""SLA arithmetic: business calendars, paused clocks, due times, warnings and breaches. No I/O.

A target is a budget of seconds. Seconds count only inside the calendar's working hours (every second
when there is no calendar) and not while the ticket is paused (waiting on the customer, resolved).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contracts.support import SlaAlertKind, SlaTarget, TicketCategory, TicketPriority

# Far enough for any sane target; a bound so a calendar with too few working hours cannot loop forever.
_MAX_DAYS_AHEAD: Final = 3 * 366
ISO_WEEKDAYS: Final = frozenset(range(1, 8))


class SlaConfigError(ValueError):
    """A calendar or policy that cannot be used (the message names what is wrong)."""


class NoSlaPolicy(LookupError):
    def __init__(self, priority: TicketPriority, category: TicketCategory) -> None:
        super().__init__(f"no SLA policy covers priority {priority} (category {category})")


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days (ISO weekdays, 1 = Monday) and hours in a time zone, minus holidays."""

    calendar_id: str
    timezone: str = "UTC"
    working_days: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    day_start: time = time(9, 0)
    day_end: time = time(17, 0)
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if not self.working_days or not self.working_days <= ISO_WEEKDAYS:
            raise SlaConfigError("working_days are ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
        if self.day_start >= self.day_end:
            raise SlaConfigError("day_start must be before day_end")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SlaConfigError(f"unknown time zone {self.timezone!r}") from exc

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The working hours of one local day, in UTC; None on days off and holidays."""
        if day.isoweekday() not in self.working_days or day in self.holidays:
            return None
        zone = self.zone
        start = datetime.combine(day, self.day_start, tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day, self.day_end, tzinfo=zone).astimezone(UTC)
        return start, end


def working_seconds(calendar: BusinessCalendar | None, start: datetime, end: datetime) -> float:
    """Seconds of working time in [start, end)."""
    if end <= start:
        return 0.0
    if calendar is None:
        return (end - start).total_seconds()
    zone = calendar.zone
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    total = 0.0
    while day <= last:
        window = calendar.window(day)
        if window is not None:
            lo, hi = max(window[0], start), min(window[1], end)
            if hi > lo:
                total += (hi - lo).total_seconds()
        day += timedelta(days=1)
    return total


def add_working_seconds(calendar: BusinessCalendar | None, start: datetime, seconds: float) -> datetime:
    """The instant at which `seconds` of working time have passed since `start`."""
    if seconds <= 0:
        return start
    if calendar is None:
        return start + timedelta(seconds=seconds)
    remaining = seconds
    day = start.astimezone(calendar.zone).date()
    for _ in range(_MAX_DAYS_AHEAD):
        window = calendar.window(day)
        if window is not None:
            lo, hi = max(window[0], start), window[1]
            if hi > lo:
                available = (hi - lo).total_seconds()
                if remaining <= available:
                    return lo + timedelta(seconds=remaining)
                remaining -= available
        day += timedelta(days=1)
    raise SlaConfigError(f"calendar {calendar.calendar_id} has too few working hours for this target")


@dataclass(frozen=True)
class Pause:
    """A span during which the clock stood still; `end` is None while it still stands."""

    start: datetime
    end: datetime | None = None


def elapsed_seconds(
    calendar: BusinessCalendar | None, opened_at: datetime, pauses: Iterable[Pause], until: datetime
) -> float:
    """Working seconds counted between opening and `until`, pauses excluded."""
    total = working_seconds(calendar, opened_at, until)
    for pause in pauses:
        lo = max(pause.start, opened_at)
        hi = min(pause.end or until, until)
        total -= working_seconds(calendar, lo, hi)
    return max(total, 0.0)


def due_at(
    calendar: BusinessCalendar | None, opened_at: datetime, pauses: Sequence[Pause], budget_s: float
) -> datetime | None:
    """When the clock reaches `budget_s`, given the pauses so far; None while it is paused."""
    remaining = budget_s
    cursor = opened_at
    for pause in sorted(pauses, key=lambda p: p.start):
        if pause.end is not None and pause.end <= cursor:
            continue
        candidate = add_working_seconds(calendar, cursor, remaining)
        if pause.start >= candidate:
            return candidate
        remaining -= working_seconds(calendar, cursor, max(pause.start, cursor))
        if pause.end is None:
            return None
        cursor = max(pause.end, cursor)
    return add_working_seconds(calendar, cursor, remaining)


@dataclass(frozen=True)
class SlaPolicy:
    """Targets for tickets of one priority (and optionally one category), in seconds of working time."""

    priority: TicketPriority
    first_response_s: int
    resolution_s: int
    category: TicketCategory | None = None
    calendar_id: str | None = None

    def __post_init__(self) -> None:
        if self.first_response_s <= 0 or self.resolution_s <= 0:
            raise SlaConfigError("SLA targets are positive numbers of seconds")
        if self.first_response_s > self.resolution_s:
            raise SlaConfigError("the first-response target cannot be longer than the resolution target")

    def target_s(self, target: SlaTarget) -> int:
        return self.first_response_s if target is SlaTarget.FIRST_RESPONSE else self.resolution_s


def choose_policy(
    policies: Iterable[SlaPolicy], priority: TicketPriority, category: TicketCategory
) -> SlaPolicy:
    """The policy for this category and priority, else the one for the priority alone."""
    general: SlaPolicy | None = None
    for policy in policies:
        if policy.priority is not priority:
            continue
        if policy.category is category:
            return policy
        if policy.category is None:
            general = policy
    if general is None:
        raise NoSlaPolicy(priority, category)
    return general


class SlaPhase(StrEnum):
    ON_TRACK = "on_track"
    WARNING = "warning"
    BREACHED = "breached"
    MET = "met"
    MISSED = "missed"


@dataclass(frozen=True)
class TargetStatus:
    target: SlaTarget
    target_s: int
    elapsed_s: float
    phase: SlaPhase
    paused: bool
    due_at: datetime | None
    warn_at: datetime | None
    met_at: datetime | None

    @property
    def seconds_left(self) -> float:
        """Working seconds left; negative when overdue."""
        return self.target_s - self.elapsed_s

    @property
    def settled(self) -> bool:
        return self.phase in (SlaPhase.MET, SlaPhase.MISSED)


def evaluate_target(
    target: SlaTarget,
    *,
    target_s: int,
    calendar: BusinessCalendar | None,
    opened_at: datetime,
    pauses: Sequence[Pause],
    met_at: datetime | None,
    now: datetime,
    warning_share: float,
) -> TargetStatus:
    """Where one target stands at `now` (or stood when it was met)."""
    if not 0 < warning_share < 1:
        raise SlaConfigError("the warning share is between 0 and 1 (e.g. 0.8)")
    if met_at is not None:
        elapsed = elapsed_seconds(calendar, opened_at, pauses, met_at)
        phase = SlaPhase.MET if elapsed <= target_s else SlaPhase.MISSED
        return TargetStatus(target, target_s, elapsed, phase, False, None, None, met_at)
    paused = any(pause.end is None and pause.start <= now for pause in pauses)
    elapsed = elapsed_seconds(calendar, opened_at, pauses, now)
    if elapsed >= target_s:
        phase = SlaPhase.BREACHED
    elif elapsed >= warning_share * target_s:
        phase = SlaPhase.WARNING
    else:
        phase = SlaPhase.ON_TRACK
    return TargetStatus(
        target,
        target_s,
        elapsed,
        phase,
        paused,
        due_at(calendar, opened_at, pauses, target_s),
        due_at(calendar, opened_at, pauses, warning_share * target_s),
        None,
    )


def alerts_due(status: TargetStatus, raised: Iterable[SlaAlertKind]) -> list[SlaAlertKind]:
    """The alerts this target calls for now that were not raised before (at most one per kind)."""
    already = set(raised)
    if status.settled or SlaAlertKind.BREACH in already:
        return []
    if status.phase is SlaPhase.BREACHED:
        return [SlaAlertKind.BREACH]
    if status.phase is SlaPhase.WARNING and SlaAlertKind.WARNING not in already:
        return [SlaAlertKind.WARNING]
    return []


def next_check_at(
    statuses: Iterable[TargetStatus], raised: Mapping[SlaTarget, Iterable[SlaAlertKind]], *, now: datetime
) -> datetime | None:
    """The earliest instant at which one of these targets will call for an alert; None: never by itself."""
    moments: list[datetime] = []
    for status in statuses:
        already = set(raised.get(status.target, ()))
        if alerts_due(status, already):
            moments.append(now)
            continue
        if status.settled or status.paused or SlaAlertKind.BREACH in already:
            continue
        if SlaAlertKind.WARNING not in already and status.warn_at is not None:
            moments.append(status.warn_at)
        elif status.due_at is not None:
            moments.append(status.due_at)
    return min(moments, default=None)

"""A reporting period given as `from` and `to` query parameters: checked once, answered as a 422
problem naming the field, so every figures route bounds its range the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chassis.problems import Problem


def _refused(field: str, code: str, message: str) -> Problem:
    return Problem(
        422,
        "validation_failed",
        detail=f"Invalid request: query.{field}",
        errors=[{"field": f"query.{field}", "code": code, "message": message}],
    )


def bounded_period(
    since: datetime | None, until: datetime | None, *, default: timedelta, longest: timedelta
) -> tuple[datetime, datetime]:
    """`[since, until)` in UTC: `until` defaults to now, `since` to `default` before it. A period that
    ends before it starts, or spans more than `longest`, is refused."""
    end = (until or datetime.now(UTC)).astimezone(UTC)
    start = (since or end - default).astimezone(UTC)
    if start >= end:
        raise _refused("from", "after_to", "`from` must come before `to`.")
    if end - start > longest:
        raise _refused("from", "range_too_long", f"The period may span at most {longest.days} days.")
    return start, end


def hour_starts(start: datetime, end: datetime) -> list[datetime]:
    """The start of every UTC hour that overlaps `[start, end)`, in order."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours

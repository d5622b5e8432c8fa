"""A reporting period given as `from` and `to` query parameters: checked once, answered as a 422
problem naming the field, so every figures route bounds its range the same way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from chassis.inputs import Aware
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


class PeriodFigures(BaseModel):
    """Figures over a period: the period answered (defaults filled in) and whether they count UAT tests."""

    model_config = ConfigDict(populate_by_name=True)

    since: datetime = Field(alias="from", description="inclusive, UTC")
    until: datetime = Field(alias="to", description="exclusive, UTC")
    test: bool = Field(description="true: UAT test figures only; false: real ones only")


def period_query(*, default: timedelta, longest: timedelta) -> Callable[..., tuple[datetime, datetime]]:
    """A route dependency reading `from` and `to` into a bounded period (see `bounded_period`)."""
    default_text = f"{default.days} days" if default.days else f"{default.seconds // 3600} h"

    def period(
        since: Aware | None = Query(
            None, alias="from", description=f"inclusive; default: {default_text} before `to`"
        ),
        until: Aware | None = Query(None, alias="to", description="exclusive; default: now"),
    ) -> tuple[datetime, datetime]:
        return bounded_period(since, until, default=default, longest=longest)

    return period

"""HTTP in for the order charts: orders created per hour by state, counted by the database (exact
with any number of replicas, and nothing streamed to count them)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from chassis.deps import DbPool
from chassis.inputs import Identifier
from chassis.periods import PeriodFigures, hour_starts, period_query
from contracts.orders import OrderState

from . import stats_repository
from .api import Reader

PERIOD = period_query(default=timedelta(hours=24), longest=timedelta(days=31))


class HourCounts(BaseModel):
    hour: datetime = Field(description="the hour's start, UTC")
    pending: int
    completed: int
    cancelled: int
    total: int


class HourlyOrderStats(PeriodFigures):
    hours: list[HourCounts] = Field(description="every hour of the period, oldest first, zeros included")


def hours_of(start: datetime, end: datetime, counted: Counter[tuple[datetime, str]]) -> list[HourCounts]:
    """Each hour of the period with its count per state (zeros where nothing was created)."""
    hours = []
    for hour in hour_starts(start, end):
        by_state = {state.value: counted[(hour, state.value)] for state in OrderState}
        hours.append(HourCounts(hour=hour, total=sum(by_state.values()), **by_state))
    return hours


router = APIRouter(prefix="/v1/orders/stats", tags=["orders"])


@router.get(
    "/hourly",
    summary="Orders created per UTC hour, by state, over at most 31 days (real orders unless `test`)",
    response_model=HourlyOrderStats,
)
async def hourly(
    pool: DbPool,
    principal: Reader,
    period: tuple[datetime, datetime] = Depends(PERIOD),
    campaign_id: Identifier | None = None,
    member_id: Identifier | None = None,
    test: bool = Query(False, description="true: UAT test orders only; false: real orders only"),
) -> HourlyOrderStats:
    start, end = period
    flt = stats_repository.HourlyFilter(start, end, campaign_id, member_id, test)
    async with pool.acquire() as conn:
        rows = await stats_repository.hourly_counts(conn, flt)
    counted = Counter({(r["hour"].astimezone(UTC), r["state"]): int(r["n"]) for r in rows})
    return HourlyOrderStats(since=start, until=end, test=test, hours=hours_of(start, end, counted))

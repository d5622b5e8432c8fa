"""HTTP in for the delivery charts: per channel, how many deliveries were sent, failed for good or
are still pending, counted in the service's own tables (the same answer from every replica, and
across restarts)."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from chassis.deps import DbPool
from chassis.inputs import Identifier
from chassis.periods import PeriodFigures, period_query
from contracts.values import Channel

from .api import Reviewer
from .repository import stats as repository

PERIOD = period_query(default=timedelta(days=7), longest=timedelta(days=31))

router = APIRouter(prefix="/v1", tags=["delivery"])


class ChannelCounts(BaseModel):
    channel: Channel | None = Field(description="null: a code whose recipient has not arrived yet")
    sent: int
    failed: int = Field(description="failed for good (awaiting review)")
    pending: int = Field(description="waiting for their code or recipient, queued, retrying or sending")


class DeliveryStats(PeriodFigures):
    channels: list[ChannelCounts] = Field(description="channels with any delivery in the period")


@router.get(
    "/deliveries/stats",
    response_model=DeliveryStats,
    summary="Deliveries created in a period (at most 31 days; default the last 7) per channel: sent, failed, "
    "pending (real deliveries unless `test`)",
)
async def delivery_stats(
    pool: DbPool,
    _: Reviewer,
    period: tuple[datetime, datetime] = Depends(PERIOD),
    campaign_id: Identifier | None = Query(
        None, description="one campaign's deliveries (messages have none)"
    ),
    test: bool = Query(False, description="true: UAT test deliveries only; false: real ones only"),
) -> DeliveryStats:
    start, end = period
    async with pool.acquire() as conn:
        rows = await repository.channel_counts(conn, start, end, test=test, campaign_id=campaign_id)
    return DeliveryStats(
        since=start, until=end, test=test, channels=[ChannelCounts(**dict(row)) for row in rows]
    )

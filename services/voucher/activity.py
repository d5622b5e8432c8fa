"""`campaign.activity`: what was done to a campaign's codes, told to its owners (through the delivery
service's Slack/Teams routing), written in the transaction that did it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from chassis.db import Connection
from contracts.campaigns import CampaignActivity, CampaignActivityKind

from .events import publish

SYSTEM_ACTOR = "system"


async def tell(
    conn: Connection,
    kind: CampaignActivityKind,
    counts: dict[str, int],
    *,
    actor: str | None,
    detail: str | None,
) -> None:
    """One event per campaign concerned, with how many of its codes."""
    if counts:
        await publish(
            conn,
            [
                CampaignActivity(
                    campaign_id=campaign_id,
                    kind=kind,
                    count=count,
                    actor=None if actor in (None, SYSTEM_ACTOR) else actor,
                    detail=detail[:2000] if detail else None,
                )
                for campaign_id, count in sorted(counts.items())
            ],
        )


def per_campaign(campaign_ids: Iterable[str]) -> dict[str, int]:
    return dict(Counter(campaign_ids))

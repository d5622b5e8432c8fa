"""Per-campaign notice routing (SQL): where a campaign's Slack/Teams notices go and whom they mention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from chassis.db import Connection

ROUTE_TARGET_PREFIX = "campaign:"


def route_target(campaign_id: str, kind: str) -> str:
    """The `notifications.target` of a campaign's own channel of one kind (slack, teams)."""
    return f"{ROUTE_TARGET_PREFIX}{campaign_id}:{kind}"


def split_route_target(target: str) -> tuple[str, str] | None:
    """(campaign_id, slack|teams) of a route target; None for a default target."""
    if not target.startswith(ROUTE_TARGET_PREFIX):
        return None
    campaign_id, _, kind = target[len(ROUTE_TARGET_PREFIX) :].rpartition(":")
    return campaign_id, kind


@dataclass(frozen=True)
class CampaignRoute:
    campaign_id: str
    slack_url: bytes | None
    teams_url: bytes | None
    owners: tuple[str, ...]
    approvers: tuple[str, ...]
    kinds: tuple[str, ...]
    only_here: bool

    @property
    def targets(self) -> list[str]:
        channels = (("slack", self.slack_url), ("teams", self.teams_url))
        return [route_target(self.campaign_id, kind) for kind, url in channels if url is not None]

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CampaignRoute:
        return cls(
            campaign_id=row["campaign_id"],
            slack_url=row["slack_url"],
            teams_url=row["teams_url"],
            owners=tuple(row["owners"]),
            approvers=tuple(row["approvers"]),
            kinds=tuple(row["kinds"]),
            only_here=row["only_here"],
        )


async def save_route(conn: Connection, route: CampaignRoute, *, updated_by: str) -> None:
    await conn.execute(
        """
        INSERT INTO campaign_routes (campaign_id, slack_url, teams_url, owners, approvers, kinds, only_here,
                                     updated_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (campaign_id) DO UPDATE SET
            slack_url = EXCLUDED.slack_url, teams_url = EXCLUDED.teams_url, owners = EXCLUDED.owners,
            approvers = EXCLUDED.approvers, kinds = EXCLUDED.kinds, only_here = EXCLUDED.only_here,
            updated_by = EXCLUDED.updated_by, updated_at = now()
        """,
        route.campaign_id,
        route.slack_url,
        route.teams_url,
        list(route.owners),
        list(route.approvers),
        list(route.kinds),
        route.only_here,
        updated_by,
    )


async def get_route(conn: Connection | asyncpg.Pool, campaign_id: str) -> CampaignRoute | None:
    row = await conn.fetchrow("SELECT * FROM campaign_routes WHERE campaign_id = $1", campaign_id)
    return CampaignRoute.from_row(row) if row else None


async def list_routes(conn: Connection, *, after: str | None, limit: int) -> list[CampaignRoute]:
    rows = await conn.fetch(
        "SELECT * FROM campaign_routes WHERE campaign_id > coalesce($1, '') ORDER BY campaign_id LIMIT $2",
        after,
        limit,
    )
    return [CampaignRoute.from_row(r) for r in rows]


async def delete_route(conn: Connection, campaign_id: str) -> bool:
    """Forget a campaign's route and drop the notices still waiting for its channels."""
    deleted = await conn.execute("DELETE FROM campaign_routes WHERE campaign_id = $1", campaign_id)
    await conn.execute(
        "DELETE FROM notifications WHERE sent_at IS NULL AND target = ANY($1::text[])",
        [route_target(campaign_id, kind) for kind in ("slack", "teams")],
    )
    return deleted.endswith(" 1")


async def routes_of(conn: Connection, campaign_ids: Sequence[str]) -> dict[str, CampaignRoute]:
    if not campaign_ids:
        return {}
    rows = await conn.fetch(
        "SELECT * FROM campaign_routes WHERE campaign_id = ANY($1::text[])", list(set(campaign_ids))
    )
    return {r["campaign_id"]: CampaignRoute.from_row(r) for r in rows}


async def pending_route_targets(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT DISTINCT target FROM notifications WHERE sent_at IS NULL AND next_attempt_at <= now()"
        " AND target LIKE 'campaign:%'"
    )
    return [r["target"] for r in rows]


async def drop_pending(pool: asyncpg.Pool, target: str) -> None:
    """Notices for a channel its campaign no longer has: nobody to send them to."""
    await pool.execute("DELETE FROM notifications WHERE sent_at IS NULL AND target = $1", target)

"""Kafka in: `member.upserted` from HR systems, one directory change per event (inbox, at least once)."""

from __future__ import annotations

from typing import Any

import structlog

from chassis.consumer import Subscription
from chassis.db import Connection
from contracts.envelope import Envelope
from contracts.members import MemberUpserted
from contracts.topics import Topics

from .directory import apply_change

log = structlog.get_logger(__name__)


async def on_member_upserted(conn: Connection, env: Envelope[Any]) -> None:
    d: MemberUpserted = env.data
    changed = await apply_change(
        conn,
        d.member_id,
        d.model_dump(exclude={"member_id", "changed_at"}),
        actor=f"hris:{env.producer}",
        source="hris",
        changed_at=d.changed_at,
    )
    # Field names only: the values are contact details.
    log.info("member_directory_changed", member_id=d.member_id, fields=changed, source="hris")


def subscriptions() -> list[Subscription]:
    return [Subscription("delivery-members", Topics.MEMBER_UPSERTED, MemberUpserted, on_member_upserted)]

"""Rewards and storefront sagas (SQL)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from chassis.db import Connection
from chassis.rows import from_row
from services.redemption.lifecycle import CatalogueStatus
from services.redemption.storefront.domain import Saga, SagaState


@dataclass(frozen=True)
class Reward:
    reward_id: str
    name: str
    campaign_id: str
    points_price: int
    description: str | None
    amount: Decimal | None
    currency: str | None
    active: bool
    stock_remaining: int | None
    status: CatalogueStatus = CatalogueStatus.ACTIVE

    def __post_init__(self) -> None:
        # `active` is what redemptions read; the status says why a reward is not (paused or ended).
        if not self.active and self.status is CatalogueStatus.ACTIVE:
            object.__setattr__(self, "status", CatalogueStatus.PAUSED)

    @property
    def available(self) -> bool:
        return self.active and (self.stock_remaining is None or self.stock_remaining > 0)

    @classmethod
    def from_row(cls, row: Any) -> Reward:
        return from_row(cls, row, status=CatalogueStatus(row["status"]))


async def insert_reward(conn: Connection, reward: Reward, *, created_by: str) -> bool:
    status = await conn.execute(
        """
        INSERT INTO rewards (reward_id, name, description, campaign_id, points_price, amount, currency,
                             active, stock_remaining, created_by, status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (reward_id) DO NOTHING
        """,
        reward.reward_id,
        reward.name,
        reward.description,
        reward.campaign_id,
        reward.points_price,
        reward.amount,
        reward.currency,
        reward.active,
        reward.stock_remaining,
        created_by,
        reward.status.value,
    )
    return status.endswith(" 1")


async def lock_reward(conn: Connection, reward_id: str) -> Reward | None:
    row = await conn.fetchrow("SELECT * FROM rewards WHERE reward_id = $1 FOR UPDATE", reward_id)
    return Reward.from_row(row) if row else None


async def update_reward(conn: Connection, reward: Reward) -> None:
    """Write what can change of a reward: its terms, its stock and its status."""
    await conn.execute(
        """
        UPDATE rewards SET name = $2, description = $3, points_price = $4, amount = $5, currency = $6,
                           stock_remaining = $7, status = $8, active = ($8 = 'active'), updated_at = now()
         WHERE reward_id = $1
        """,
        reward.reward_id,
        reward.name,
        reward.description,
        reward.points_price,
        reward.amount,
        reward.currency,
        reward.stock_remaining,
        reward.status.value,
    )


async def get_reward(conn: Connection, reward_id: str) -> Reward | None:
    row = await conn.fetchrow("SELECT * FROM rewards WHERE reward_id = $1", reward_id)
    return Reward.from_row(row) if row else None


async def list_rewards(conn: Connection, *, only_available: bool) -> list[Reward]:
    rows = await conn.fetch("SELECT * FROM rewards ORDER BY points_price, reward_id")
    rewards = [Reward.from_row(r) for r in rows]
    return [r for r in rewards if r.available] if only_available else rewards


async def take_stock(conn: Connection, reward_id: str) -> bool:
    """Reserve one unit of a limited reward; False when none is left (or the reward is inactive).

    An unlimited reward is only read: locking its row would serialise every redemption of it."""
    row = await conn.fetchrow(
        """
        WITH limited AS (
            UPDATE rewards SET stock_remaining = stock_remaining - 1
             WHERE reward_id = $1 AND active AND stock_remaining > 0
            RETURNING reward_id
        )
        SELECT reward_id FROM limited
        UNION ALL
        SELECT reward_id FROM rewards WHERE reward_id = $1 AND active AND stock_remaining IS NULL
        """,
        reward_id,
    )
    return row is not None


async def give_back_stock(conn: Connection, reward_id: str) -> None:
    await conn.execute(
        "UPDATE rewards SET stock_remaining = stock_remaining + 1"
        " WHERE reward_id = $1 AND stock_remaining IS NOT NULL",
        reward_id,
    )


@dataclass(frozen=True)
class SagaRow:
    saga: Saga
    member_id: str
    reward_id: str
    campaign_id: str
    points: int
    amount: Decimal | None
    currency: str | None
    contact: dict[str, str] | None
    correlation_id: str
    requested_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> SagaRow:
        return from_row(
            cls,
            row,
            saga=from_row(Saga, row, state=SagaState(row["state"])),
            contact=json.loads(row["contact"]) if row["contact"] else None,
        )


async def find_by_client_key(conn: Connection, member_id: str, client_key: str) -> SagaRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM storefront_redemptions WHERE member_id = $1 AND client_key = $2", member_id, client_key
    )
    return SagaRow.from_row(row) if row else None


async def insert_saga(
    conn: Connection,
    row: SagaRow,
    *,
    client_key: str | None,
    next_attempt_at: datetime,
) -> bool:
    """False when the member already used `client_key` (the existing redemption stands)."""
    status = await conn.execute(
        """
        INSERT INTO storefront_redemptions
            (redemption_id, member_id, reward_id, campaign_id, points, amount, currency, state,
             client_key, contact, correlation_id, requested_by, next_attempt_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13)
        ON CONFLICT (member_id, client_key) DO NOTHING
        """,
        row.saga.redemption_id,
        row.member_id,
        row.reward_id,
        row.campaign_id,
        row.points,
        row.amount,
        row.currency,
        str(row.saga.state),
        client_key,
        json.dumps(row.contact) if row.contact else None,
        row.correlation_id,
        row.requested_by,
        next_attempt_at,
    )
    if status.endswith(" 1"):
        await add_transition(conn, row.saga.redemption_id, None, row.saga.state, "requested", None)
        return True
    return False


async def lock_saga(conn: Connection, redemption_id: uuid.UUID) -> SagaRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM storefront_redemptions WHERE redemption_id = $1 FOR UPDATE", redemption_id
    )
    return SagaRow.from_row(row) if row else None


async def lock_saga_by_order(conn: Connection, order_id: uuid.UUID) -> SagaRow | None:
    row = await conn.fetchrow("SELECT * FROM storefront_redemptions WHERE order_id = $1 FOR UPDATE", order_id)
    return SagaRow.from_row(row) if row else None


async def orders_with_saga(conn: Connection, order_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these orders a storefront redemption placed (most orders are not the storefront's)."""
    rows = await conn.fetch(
        "SELECT order_id FROM storefront_redemptions WHERE order_id = ANY($1::uuid[])", order_ids
    )
    return {r["order_id"] for r in rows}


async def get_saga(conn: Connection, redemption_id: uuid.UUID) -> SagaRow | None:
    row = await conn.fetchrow("SELECT * FROM storefront_redemptions WHERE redemption_id = $1", redemption_id)
    return SagaRow.from_row(row) if row else None


async def list_sagas(conn: Connection, member_id: str, limit: int) -> list[SagaRow]:
    rows = await conn.fetch(
        "SELECT * FROM storefront_redemptions WHERE member_id = $1 ORDER BY created_at DESC LIMIT $2",
        member_id,
        limit,
    )
    return [SagaRow.from_row(r) for r in rows]


async def save_saga(
    conn: Connection,
    before: Saga,
    after: Saga,
    *,
    cause: str,
    next_attempt_at: datetime | None,
    forget_contact: bool,
) -> None:
    await conn.execute(
        """
        UPDATE storefront_redemptions
           SET state = $2, debit_entry_id = $3, refund_entry_id = $4, order_id = $5, booking_id = $6,
               reason = $7, attempts = $8, next_attempt_at = $9,
               contact = CASE WHEN $10 THEN NULL ELSE contact END, updated_at = now()
         WHERE redemption_id = $1
        """,
        after.redemption_id,
        str(after.state),
        after.debit_entry_id,
        after.refund_entry_id,
        after.order_id,
        after.booking_id,
        after.reason,
        after.attempts,
        next_attempt_at,
        forget_contact,
    )
    if before.state is not after.state:
        await add_transition(conn, after.redemption_id, before.state, after.state, cause, after.reason)


async def add_transition(
    conn: Connection,
    redemption_id: uuid.UUID,
    from_state: SagaState | None,
    to_state: SagaState,
    cause: str,
    reason: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO storefront_transitions (redemption_id, from_state, to_state, cause, reason)"
        " VALUES ($1, $2, $3, $4, $5)",
        redemption_id,
        str(from_state) if from_state else None,
        str(to_state),
        cause,
        reason,
    )


async def transitions(conn: Connection, redemption_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT from_state, to_state, cause, reason, at FROM storefront_transitions"
        " WHERE redemption_id = $1 ORDER BY id",
        redemption_id,
    )
    return [dict(r) for r in rows]


async def record_wallet_entry(
    conn: Connection, redemption_id: uuid.UUID, kind: str, entry_id: uuid.UUID, key: str, amount: int
) -> bool:
    """Remember a wallet entry the saga caused; False when this very entry was already known.

    A different entry for the same redemption and kind violates the primary key: the caller's
    transaction fails and the event is dead-lettered rather than counted twice.
    """
    status = await conn.execute(
        """
        INSERT INTO storefront_wallet_entries (redemption_id, kind, entry_id, idempotency_key, amount)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (entry_id) DO NOTHING
        """,
        redemption_id,
        kind,
        entry_id,
        key,
        amount,
    )
    return status.endswith(" 1")


async def due_sagas(conn: Connection, limit: int) -> list[SagaRow]:
    rows = await conn.fetch(
        """
        SELECT * FROM storefront_redemptions
         WHERE state IN ('debit_requested', 'order_requested', 'refund_requested')
           AND next_attempt_at <= now()
         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
        """,
        limit,
    )
    return [SagaRow.from_row(r) for r in rows]

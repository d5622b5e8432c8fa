"""Kafka in for the storefront saga: the wallet's and the order service's answers, and the re-drive job."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any

import asyncpg
import structlog

from chassis.consumer import Subscription
from chassis.db import Connection
from chassis.jobs import PeriodicJob
from contracts.envelope import Envelope
from contracts.orders import OrderSource, OrderState, OrderStateChanged
from contracts.topics import Topics
from contracts.wallet import WalletDebitRejected, WalletTransactionRecorded
from services.redemption.storefront import domain
from services.redemption.storefront import repository as repo
from services.redemption.storefront.steps import RetryPolicy, carry_out

log = structlog.get_logger(__name__)

REDRIVE_BATCH = 200


async def on_transaction_recorded(policy: RetryPolicy, conn: Connection, env: Envelope[Any]) -> None:
    data: WalletTransactionRecorded = env.data
    parsed = domain.redemption_of_key(data.idempotency_key)
    if parsed is None or parsed[1] == "order":
        return
    redemption_id, step = parsed
    row = await repo.lock_saga(conn, redemption_id)
    if row is None:
        return
    kind = "debit" if step == "debit" else "refund"
    await repo.record_wallet_entry(
        conn, redemption_id, kind, data.entry_id, data.idempotency_key, data.amount
    )
    event: domain.SagaEvent = (
        domain.DebitRecorded(data.entry_id) if kind == "debit" else domain.RefundRecorded(data.entry_id)
    )
    await _advance(conn, row, event, f"wallet.{kind}_recorded", policy, env)


async def on_debit_rejected(policy: RetryPolicy, conn: Connection, env: Envelope[Any]) -> None:
    data: WalletDebitRejected = env.data
    parsed = domain.redemption_of_key(data.idempotency_key)
    if parsed is None or parsed[1] != "debit":
        return
    row = await repo.lock_saga(conn, parsed[0])
    if row is None:
        return
    await _advance(conn, row, domain.DebitRejected(data.reason), "wallet.debit_rejected", policy, env)


async def on_order_state_changed(policy: RetryPolicy, conn: Connection, env: Envelope[Any]) -> None:
    data: OrderStateChanged = env.data
    # The order names its redemption; an older producer may only echo our order key as external_ref.
    by_key = domain.redemption_of_key(data.external_ref or "")
    if data.redemption_id is not None:
        row = await repo.lock_saga(conn, data.redemption_id)
    elif by_key is not None and by_key[1] == "order":
        row = await repo.lock_saga(conn, by_key[0])
    else:
        row = await repo.lock_saga_by_order(conn, data.order_id)
    if row is None:
        return
    event: domain.SagaEvent
    if data.state is OrderState.COMPLETED:
        event = domain.OrderCompleted(data.order_id, data.booking_id)
    elif data.state is OrderState.CANCELLED:
        event = domain.OrderCancelled(data.order_id, data.reason, data.booking_id)
    else:
        event = domain.OrderOpened(data.order_id, data.booking_id)
    await _advance(conn, row, event, f"order.{data.state}", policy, env)


async def on_order_states(policy: RetryPolicy, conn: Connection, envs: Sequence[Envelope[Any]]) -> None:
    """`on_order_state_changed` for each event in turn, skipping in one query the many orders (IPA
    allocations) that no storefront saga is waiting for."""
    unnamed = [e for e in envs if not _may_name_a_saga(e.data)]
    with_saga: set[uuid.UUID] = set()
    if unnamed:
        with_saga = await repo.orders_with_saga(conn, list({e.data.order_id for e in unnamed}))
    for env in envs:
        if _may_name_a_saga(env.data) or env.data.order_id in with_saga:
            await on_order_state_changed(policy, conn, env)


def storefront_subscriptions(policy: RetryPolicy) -> list[Subscription]:
    return [
        Subscription(
            "storefront-wallet-recorded",
            Topics.WALLET_TRANSACTION_RECORDED,
            WalletTransactionRecorded,
            partial(on_transaction_recorded, policy),
        ),
        Subscription(
            "storefront-wallet-rejected",
            Topics.WALLET_DEBIT_REJECTED,
            WalletDebitRejected,
            partial(on_debit_rejected, policy),
        ),
        Subscription(
            "storefront-order-state",
            Topics.ORDER_STATE_CHANGED,
            OrderStateChanged,
            partial(on_order_state_changed, policy),
            handle_batch=partial(on_order_states, policy),
            relevant=_may_concern_a_saga,
        ),
    ]


async def _advance(
    conn: Connection,
    row: repo.SagaRow,
    event: domain.SagaEvent,
    cause: str,
    policy: RetryPolicy,
    env: Envelope[Any],
) -> None:
    """The saga moved on by an answer (`event`), its next step carried out under the answer's ids."""
    decision = domain.apply(row.saga, event)
    await carry_out(
        conn,
        row,
        decision,
        cause=cause,
        policy=policy,
        correlation_id=env.correlation_id,
        causation_id=str(env.event_id),
    )


def _may_concern_a_saga(data: OrderStateChanged) -> bool:
    """Only the storefront places orders for sagas; IPA and API orders never concern one."""
    return data.source is OrderSource.STOREFRONT or _may_name_a_saga(data)


def _may_name_a_saga(data: OrderStateChanged) -> bool:
    """The event names its redemption (by id or by our order key): it is looked up by that, not by order."""
    by_key = domain.redemption_of_key(data.external_ref or "")
    return data.redemption_id is not None or (by_key is not None and by_key[1] == "order")


async def redrive_due(pool: asyncpg.Pool, policy: RetryPolicy) -> int:
    """Ask again for every step whose answer is overdue (same idempotency keys); returns how many."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await repo.due_sagas(conn, REDRIVE_BATCH)
        for row in rows:
            decision = domain.redrive(row.saga, max_order_attempts=policy.max_order_attempts)
            await carry_out(conn, row, decision, cause="timeout", policy=policy)
    if rows:
        log.info("storefront_sagas_redriven", count=len(rows))
    return len(rows)


def redrive_job(policy: RetryPolicy, interval_s: float) -> PeriodicJob:
    async def run(pool: asyncpg.Pool) -> None:
        await redrive_due(pool, policy)

    return PeriodicJob("redemption-storefront-redrive", interval_s, run)

"""`python -m bench.wallet [--postings N] [--workers W] [--json PATH]`: wallet ledger postings per second.

Concurrent debits through the wallet's own posting path (`Ledger.post`: the member's row lock, the
idempotency check, FIFO lots, the entry with its database checks, the balance row, the outbox event
and the member audit chain, in one transaction each) for ONE member (every posting queues on the same
row lock) and for DIFFERENT members (one per worker), next to raw asyncpg baselines of the same shape
measured in the same run on the same server: a 1-row INSERT per transaction, and lock row → INSERT →
UPDATE row per transaction on one shared row and on a row per worker. Ratios divide ours by the raw
baseline of the same shape, so machine and load cancel out. Not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from chassis.db import apply_migrations
from contracts.wallet import EntryType, WalletReference
from services.wallet.domain import ExpiryPolicy, Posting
from services.wallet.ledger import Ledger
from services.wallet.service import MIGRATIONS

from .infra import Infra, open_infra, scratch_pool
from .measure import Measurement, add_json_option, quiet_logs, save_record

POINTS_PER_DEBIT = 10


def debit(member: str) -> Posting:
    return Posting(
        member_id=member,
        entry_type=EntryType.REDEMPTION,
        amount=POINTS_PER_DEBIT,
        reason_code="bench",
        actor="service:bench",
        idempotency_key=f"bench-{uuid.uuid4()}",
        reference=WalletReference(redemption_id=uuid.uuid4()),
    )


async def _run_workers(workers: int, per_worker: int, step: Callable[[int], Awaitable[None]]) -> float:
    async def work(w: int) -> None:
        for _ in range(per_worker):
            await step(w)

    started = time.monotonic()
    await asyncio.gather(*(work(w) for w in range(workers)))
    return time.monotonic() - started


async def ledger_postings(infra: Infra, postings: int, workers: int, *, same_member: bool) -> Measurement:
    """Ours: debits through `Ledger.post`, each in its own transaction, `workers` at once."""
    per_worker = postings // workers
    async with scratch_pool(infra.admin_dsn, size=workers) as (_, pool):
        await apply_migrations(pool, service_dir=MIGRATIONS)
        ledger = Ledger(ExpiryPolicy(12))
        members = ["m-shared"] if same_member else [f"m-{w}" for w in range(workers)]
        for member in members:
            async with pool.acquire() as conn, conn.transaction():
                credit = Posting(
                    member_id=member,
                    entry_type=EntryType.PROGRAMME_RULE,
                    amount=POINTS_PER_DEBIT * postings,
                    reason_code="bench",
                    actor="service:bench",
                    idempotency_key=f"seed-{member}",
                )
                await ledger.post(conn, credit)

        async def step(w: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await ledger.post(conn, debit(members[0] if same_member else members[w]), enforce_frozen=True)

        seconds = await _run_workers(workers, per_worker, step)
        balances = await pool.fetchval("SELECT min(balance) FROM wallets")
        assert balances >= 0
    who = "one member" if same_member else "a member per worker"
    key = "w1" if same_member else "wN"
    return Measurement(
        key, f"wallet debits via Ledger.post, {who}, {workers} workers", per_worker * workers, seconds
    )


async def raw_lock_insert_update(infra: Infra, postings: int, workers: int, *, same_row: bool) -> Measurement:
    """Raw asyncpg: SELECT … FOR UPDATE one row, INSERT an entry, UPDATE the row — per transaction."""
    per_worker = postings // workers
    async with scratch_pool(infra.admin_dsn, size=workers) as (_, pool):
        await pool.execute(
            "CREATE TABLE raw_balances (id int PRIMARY KEY, balance bigint NOT NULL);"
            "CREATE TABLE raw_entries (id bigserial PRIMARY KEY, balance_id int NOT NULL,"
            " amount bigint NOT NULL, key text NOT NULL UNIQUE,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = 1 if same_row else workers
        await pool.executemany(
            "INSERT INTO raw_balances VALUES ($1, $2)",
            [(i, POINTS_PER_DEBIT * postings) for i in range(rows)],
        )

        async def step(w: int) -> None:
            row = 0 if same_row else w
            async with pool.acquire() as conn, conn.transaction():
                current = await conn.fetchval(
                    "SELECT balance FROM raw_balances WHERE id = $1 FOR UPDATE", row
                )
                await conn.execute(
                    "INSERT INTO raw_entries (balance_id, amount, key) VALUES ($1, $2, $3)",
                    row,
                    POINTS_PER_DEBIT,
                    str(uuid.uuid4()),
                )
                await conn.execute(
                    "UPDATE raw_balances SET balance = $2 WHERE id = $1", row, current - POINTS_PER_DEBIT
                )

        seconds = await _run_workers(workers, per_worker, step)
    who = "one shared row" if same_row else "a row per worker"
    key = "r1" if same_row else "rN"
    return Measurement(
        key, f"raw lock+INSERT+UPDATE txns, {who}, {workers} workers", per_worker * workers, seconds
    )


async def raw_inserts(infra: Infra, postings: int, workers: int) -> Measurement:
    """Raw asyncpg: one 1-row INSERT per transaction (the messaging bench's baseline b)."""
    per_worker = postings // workers
    async with scratch_pool(infra.admin_dsn, size=workers) as (_, pool):
        await pool.execute("CREATE TABLE raw_rows (id bigserial PRIMARY KEY, key text NOT NULL UNIQUE)")

        async def step(_: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO raw_rows (key) VALUES ($1)", str(uuid.uuid4()))

        seconds = await _run_workers(workers, per_worker, step)
    return Measurement("b", f"raw 1-row INSERT txns, {workers} workers", per_worker * workers, seconds)


async def run_all(infra: Infra, postings: int, workers: int, rounds: int) -> list[Measurement]:
    """Every scenario once per round, interleaved, so a load spike on a shared machine falls on all of
    them rather than on whichever ran at that moment; each figure sums its rounds."""
    # A small unrecorded pass first, so no scenario pays alone for the first connections and plans.
    warm = max(postings // 10, workers * 5)
    await ledger_postings(infra, warm, workers, same_member=True)
    await raw_lock_insert_update(infra, warm, workers, same_row=True)
    scenarios: list[Callable[[int], Awaitable[Measurement]]] = [
        lambda n: raw_inserts(infra, n, workers),
        lambda n: raw_lock_insert_update(infra, n, workers, same_row=True),
        lambda n: raw_lock_insert_update(infra, n, workers, same_row=False),
        lambda n: ledger_postings(infra, n, workers, same_member=True),
        lambda n: ledger_postings(infra, n, workers, same_member=False),
    ]
    totals: list[Measurement | None] = [None] * len(scenarios)
    for _ in range(rounds):
        for i, scenario in enumerate(scenarios):
            m = await scenario(postings // rounds)
            so_far = totals[i]
            totals[i] = (
                m
                if so_far is None
                else replace(m, events=so_far.events + m.events, seconds=so_far.seconds + m.seconds)
            )
    return [m for m in totals if m is not None]


def ratios(results: list[Measurement]) -> dict[str, float]:
    rate = {m.key: m.rate for m in results}
    return {
        "w1/r1": rate["w1"] / rate["r1"],
        "wN/rN": rate["wN"] / rate["rN"],
        "w1/b": rate["w1"] / rate["b"],
        "wN/b": rate["wN"] / rate["b"],
        "w1/wN": rate["w1"] / rate["wN"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wallet", description=__doc__)
    parser.add_argument("--postings", type=int, default=4000, help="postings per scenario (default 4000)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent workers (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    add_json_option(parser)
    args = parser.parse_args()
    if args.workers < 1 or args.rounds < 1 or args.postings < args.workers * args.rounds:
        parser.error("--postings must be at least --workers x --rounds, both at least 1")
    quiet_logs()

    started_at = datetime.now(UTC)
    with open_infra() as infra:
        results = asyncio.run(run_all(infra, args.postings, args.workers, args.rounds))
        sources = infra.sources
    ratio = ratios(results)
    lines = [
        f"Orchard wallet bench: {args.postings} postings per scenario in {args.rounds} interleaved rounds,"
        f" {args.workers} workers,"
        f" {os.cpu_count()} CPUs; Postgres: {sources['postgres']}",
        "",
        f"{'':3} {'scenario':62} {'postings':>8} {'seconds':>8} {'per s':>8}",
    ]
    lines += [f"{m.key:3} {m.label:62} {m.events:8d} {m.seconds:8.2f} {m.rate:8.0f}" for m in results]
    lines += ["", "ratios: " + "  ".join(f"{k} {v:.2f}" for k, v in ratio.items())]
    print("\n".join(lines))
    record: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "postings": args.postings,
        "workers": args.workers,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()},
        "infra": sources,
        "results": [
            {"key": m.key, "label": m.label, "postings": m.events, "seconds": m.seconds, "per_s": m.rate}
            for m in results
        ],
        "ratios": ratio,
    }
    save_record(record, "wallet-", started_at, args.json)


if __name__ == "__main__":
    main()

"""Redemption records and their daily aggregates (SQL). Every write publishes `redemption.recorded`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from typing import Any

from chassis.db import Connection
from chassis.money import money_text
from chassis.outbox import add_event
from contracts.envelope import Envelope
from contracts.topics import Topics
from services.redemption.records.domain import Record
from services.redemption.settings import PRODUCER

RECORD_COLUMNS = tuple(f.name for f in fields(Record))


async def _add_to_daily(conn: Connection, record: Record, sign: int) -> None:
    await conn.execute(
        """
        INSERT INTO redemption_daily
            (day, kind, status, partner_id, offer_id, channel, segment_token, records, amount, points,
             currency)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """,
        *record.bucket(),
        sign,
        sign * (record.amount or 0),
        sign * (record.points or 0),
        record.currency or "",
    )


def _counts_alike(a: Record, b: Record) -> bool:
    return (
        a.bucket() == b.bucket() and (a.amount, a.currency) == (b.amount, b.currency) and a.points == b.points
    )


async def rollup_daily(conn: Connection) -> int:
    """Fold the deltas of past days into one row per bucket; sums stay exactly the same."""
    rows = await conn.fetch(
        """
        WITH gone AS (
            DELETE FROM redemption_daily WHERE day < (now() AT TIME ZONE 'UTC')::date
            RETURNING day, kind, status, partner_id, offer_id, channel, segment_token, records, amount,
                      points, currency
        )
        INSERT INTO redemption_daily
            (day, kind, status, partner_id, offer_id, channel, segment_token, records, amount, points,
             currency)
        SELECT day, kind, status, partner_id, offer_id, channel, segment_token,
               sum(records), sum(amount), sum(points), currency
          FROM gone GROUP BY day, kind, status, partner_id, offer_id, channel, segment_token, currency
        HAVING sum(records) <> 0 OR sum(amount) <> 0 OR sum(points) <> 0
        RETURNING day
        """
    )
    return len(rows)


async def write_record(
    conn: Connection, record: Record, *, correlation_id: str | None = None, causation_id: str | None = None
) -> bool:
    """Insert or update a record, keep the daily aggregates exact, publish it. False: nothing changed."""
    row = await conn.fetchrow(
        "SELECT * FROM redemption_records WHERE record_id = $1 FOR UPDATE", record.record_id
    )
    if row is not None:
        before = Record.from_row(row)
        if before == record:
            return False
        counts_change = not _counts_alike(before, record)
        if counts_change:
            await _add_to_daily(conn, before, -1)
        assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(RECORD_COLUMNS[1:]))
        await conn.execute(
            f"UPDATE redemption_records SET {assignments}, updated_at = now() WHERE record_id = $1",  # noqa: S608 -- columns are Record's field names (RECORD_COLUMNS); values are bind parameters
            *_values(record),
        )
    else:
        counts_change = True
        placeholders = ", ".join(f"${i + 1}" for i in range(len(RECORD_COLUMNS)))
        await conn.execute(
            f"INSERT INTO redemption_records ({', '.join(RECORD_COLUMNS)}) VALUES ({placeholders})",  # noqa: S608 -- columns are Record's field names (RECORD_COLUMNS); values are bind parameters
            *_values(record),
        )
    if counts_change:
        await _add_to_daily(conn, record, 1)
    envelope = Envelope.new(
        event_type=Topics.REDEMPTION_RECORDED,
        producer=PRODUCER,
        data=record.to_event(),
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    await add_event(conn, envelope, key=str(record.record_id))
    return True


def _values(record: Record) -> list[Any]:
    values = []
    for name in RECORD_COLUMNS:
        value = getattr(record, name)
        values.append(str(value) if name in ("kind", "status", "validation_method") and value else value)
    return values


async def get_record(conn: Connection, record_id: uuid.UUID) -> Record | None:
    row = await conn.fetchrow("SELECT * FROM redemption_records WHERE record_id = $1", record_id)
    return Record.from_row(row) if row else None


@dataclass(frozen=True)
class RecordFilter:
    kind: str | None = None
    status: str | None = None
    partner_id: str | None = None
    offer_id: str | None = None
    channel: str | None = None
    segment_token: str | None = None
    member_id: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    """Inclusive, by UTC day."""

    def where(self, *, daily: bool) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for column in ("kind", "status", "partner_id", "offer_id", "channel", "segment_token", "member_id"):
            value = getattr(self, column)
            if value is None:
                continue
            if daily and column == "member_id":
                raise ValueError("aggregates are not kept per member")
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
        day = "day" if daily else "(redeemed_at AT TIME ZONE 'UTC')::date"
        if self.date_from is not None:
            args.append(self.date_from)
            clauses.append(f"{day} >= ${len(args)}")
        if self.date_to is not None:
            args.append(self.date_to)
            clauses.append(f"{day} <= ${len(args)}")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


async def list_records(
    conn: Connection, flt: RecordFilter, *, limit: int, before: tuple[Any, uuid.UUID] | None = None
) -> list[Record]:
    where, args = flt.where(daily=False)
    if before is not None:
        args.extend(before)
        cursor = f"(redeemed_at, record_id) < (${len(args) - 1}, ${len(args)})"
        where = f"{where} AND {cursor}" if where else f" WHERE {cursor}"
    args.append(limit)
    rows = await conn.fetch(
        f"SELECT * FROM redemption_records{where}"  # noqa: S608 -- WHERE from RecordFilter's fixed fragments; values are bind parameters
        f" ORDER BY redeemed_at DESC, record_id DESC LIMIT ${len(args)}",
        *args,
    )
    return [Record.from_row(r) for r in rows]


AGGREGATE_DIMENSIONS = ("day", "partner_id", "channel", "offer_id", "segment_token", "status", "kind")


async def aggregate(conn: Connection, flt: RecordFilter, dimension: str) -> list[dict[str, Any]]:
    """Counts and sums per value of `dimension`, from the daily aggregates (exact after purges); money
    is summed per currency, never across currencies."""
    if dimension not in AGGREGATE_DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension}")
    where, args = flt.where(daily=True)
    rows = await conn.fetch(
        f"""
        SELECT {dimension} AS value, currency, sum(records)::bigint AS records, sum(amount) AS amount,
               sum(points)::bigint AS points
          FROM redemption_daily{where}
         GROUP BY {dimension}, currency ORDER BY {dimension}, currency
        """,  # noqa: S608 -- dimension is in AGGREGATE_DIMENSIONS, WHERE from RecordFilter; values are bind parameters
        *args,
    )
    per_value: dict[Any, list[Any]] = {}
    for r in rows:
        per_value.setdefault(r["value"], []).append(r)
    return [
        {
            "value": value.isoformat() if isinstance(value, date) else (value or None),
            **per_currency(
                [(g["currency"] or None, g["amount"]) for g in group],
                records=sum(g["records"] for g in group),
                points=sum(g["points"] for g in group),
            ),
        }
        for value, group in per_value.items()
        if sum(g["records"] for g in group) != 0
    ]


def per_currency(amounts: list[tuple[str | None, Decimal]], *, records: int, points: int) -> dict[str, Any]:
    """An aggregate's figures: money per currency in its minor units (`amounts`), and `amount` only when
    all of it is in one currency (a sum across currencies would mean nothing)."""
    totals: dict[str | None, Decimal] = {}
    for currency, amount in amounts:
        totals[currency] = totals.get(currency, Decimal(0)) + amount
    kept = sorted(((c, a) for c, a in totals.items() if a != 0), key=lambda ca: ca[0] or "")
    return {
        "records": records,
        "amount": money_text(kept[0][1], kept[0][0]) if len(kept) == 1 else ("0" if not kept else None),
        "amounts": [{"currency": c, "amount": money_text(a, c)} for c, a in kept],
        "points": str(points),
    }

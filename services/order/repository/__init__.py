"""SQL for orders, their timeline and the campaign view (unqualified names: the pool's search_path is
the service's schema)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from chassis.db import Connection
from chassis.rows import from_row
from contracts.orders import FulfilmentStatus, OrderSource, OrderState
from contracts.values import Channel, RewardType
from contracts.vouchers import CampaignChanged, CampaignStatus

from ..domain import Decision, Status, new_booking_id
from ..validation import CampaignView

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")

ORDER_COLUMNS = (
    "order_id, booking_id, source, external_ref, idempotency_key, redemption_id, batch_id, member_id,"
    " campaign_id, amount, currency, channel, state, fulfilment_status, status_reason, needs_attention,"
    " late_events, created_at, updated_at, test"
)
ORDER_COLUMN_NAMES = tuple(name.strip() for name in ORDER_COLUMNS.split(","))


def columns(items: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    """Per name, that attribute of every item (enums as their values): the arrays an `unnest` takes."""
    return [[_plain(getattr(item, name)) for item in items] for name in names]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def built_from(cls: type[D], origin: object, /, **given: Any) -> D:
    """The dataclass `cls` from the attributes of `origin` named like its fields, and `given` for the
    fields `origin` does not hold or holds otherwise (`given` wins)."""
    shared = {f.name: getattr(origin, f.name) for f in fields(cls) if f.init and hasattr(origin, f.name)}
    return cls(**{**shared, **given})


@dataclass(frozen=True)
class NewOrder:
    order_id: uuid.UUID
    source: OrderSource
    member_id: str
    campaign_id: str
    channel: Channel
    amount: Decimal | None = None
    currency: str | None = None
    external_ref: str | None = None
    idempotency_key: str | None = None
    redemption_id: uuid.UUID | None = None
    batch_id: uuid.UUID | None = None
    test: bool = False


@dataclass(frozen=True)
class OrderRow:
    order_id: uuid.UUID
    booking_id: str
    source: OrderSource
    external_ref: str | None
    member_id: str
    campaign_id: str
    amount: Decimal | None
    currency: str | None
    redemption_id: uuid.UUID | None
    status: Status
    test: bool = False

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> OrderRow:
        fulfilment = r["fulfilment_status"]
        return from_row(
            cls,
            dict(r),
            source=OrderSource(r["source"]),
            status=Status(OrderState(r["state"]), FulfilmentStatus(fulfilment) if fulfilment else None),
        )


async def upsert_campaign(conn: Connection, c: CampaignChanged) -> bool:
    """Keep the newest version only; an older or repeated snapshot changes nothing."""
    result = await conn.execute(
        """
        INSERT INTO campaigns (campaign_id, version, name, reward_type, status, currency, face_value,
                               per_record_limit, default_channel, denominations)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        ON CONFLICT (campaign_id) DO UPDATE SET
            version = EXCLUDED.version, name = EXCLUDED.name, reward_type = EXCLUDED.reward_type,
            status = EXCLUDED.status, currency = EXCLUDED.currency, face_value = EXCLUDED.face_value,
            per_record_limit = EXCLUDED.per_record_limit, default_channel = EXCLUDED.default_channel,
            denominations = EXCLUDED.denominations, updated_at = now()
        WHERE campaigns.version < EXCLUDED.version
        """,
        c.campaign_id,
        c.version,
        c.name,
        str(c.reward_type),
        str(c.status),
        c.currency,
        c.face_value,
        c.per_record_limit,
        str(c.default_channel),
        list(c.denominations),
    )
    return result.endswith(" 1")


async def load_campaigns(conn: Connection, campaign_ids: Sequence[str]) -> dict[str, CampaignView]:
    rows = await conn.fetch(
        "SELECT * FROM campaigns WHERE campaign_id = ANY($1::text[])", list(set(campaign_ids))
    )
    return {
        r["campaign_id"]: from_row(
            CampaignView,
            dict(r),
            reward_type=RewardType(r["reward_type"]),
            status=CampaignStatus(r["status"]),
            default_channel=Channel(r["default_channel"]),
            denominations=tuple(r["denominations"]),
        )
        for r in rows
    }


# One statement for the orders and their creation on the timeline, whatever their number.
_INSERT_ORDERS = """
    WITH new AS (
        INSERT INTO orders (order_id, source, member_id, campaign_id, channel, amount, currency,
            external_ref, idempotency_key, redemption_id, batch_id, test, booking_id,
            state, fulfilment_status)
        SELECT o.*, 'pending', 'awaiting_voucher'
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[],
                      $7::text[], $8::text[], $9::text[], $10::uuid[], $11::uuid[], $12::boolean[],
                      $13::text[]) AS o
        RETURNING order_id
    )
    INSERT INTO order_timeline (order_id, event, applied, state, fulfilment_status, actor,
                                cause_event_id)
    SELECT t.order_id, 'created', true, 'pending', 'awaiting_voucher', t.actor, t.cause
      FROM unnest($1::uuid[], $14::text[], $15::uuid[]) WITH ORDINALITY
           AS t(order_id, actor, cause, n)
     ORDER BY t.n
"""
_NEW_ORDER_FIELDS = tuple(f.name for f in fields(NewOrder))
"""`_INSERT_ORDERS`' first columns, in the order NewOrder declares them."""


async def insert_orders(
    conn: Connection,
    orders: Sequence[NewOrder],
    *,
    actors: Sequence[str],
    cause_event_ids: Sequence[uuid.UUID | None],
) -> list[OrderRow]:
    """Insert new pending orders with their creation on the timeline. Booking ids are random; the
    unique constraint catches the (astronomically rare) collision and the insert is retried."""
    if not orders:
        return []
    for attempt in range(5):
        bookings = [new_booking_id() for _ in orders]
        try:
            async with conn.transaction():
                await conn.execute(
                    _INSERT_ORDERS,
                    *columns(orders, _NEW_ORDER_FIELDS),
                    bookings,
                    list(actors),
                    list(cause_event_ids),
                )
            break
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "orders_booking_id_key" or attempt == 4:
                raise
    return [_pending_row(o, b) for o, b in zip(orders, bookings, strict=True)]


def _pending_row(order: NewOrder, booking_id: str) -> OrderRow:
    return built_from(
        OrderRow,
        order,
        booking_id=booking_id,
        status=Status(OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),
    )


async def storefront_order_exists(conn: Connection, idempotency_key: str, redemption_id: uuid.UUID) -> bool:
    """An order was placed for this storefront request (its idempotency key or its redemption)."""
    exists = await conn.fetchval(
        "SELECT 1 FROM orders WHERE idempotency_key = $1 OR redemption_id = $2",
        idempotency_key,
        redemption_id,
    )
    return exists is not None


async def lock_order(
    conn: Connection,
    *,
    order_id: uuid.UUID | None = None,
    booking_id: str | None = None,
    external_ref: str | None = None,
) -> OrderRow | None:
    if order_id is not None:
        row = await conn.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1 FOR UPDATE",  # noqa: S608 -- columns are a module constant; values are bind parameters
            order_id,
        )
    elif booking_id is not None:
        row = await conn.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE booking_id = $1 FOR UPDATE",  # noqa: S608 -- columns are a module constant; values are bind parameters
            booking_id.upper(),
        )
    else:
        row = await conn.fetchrow(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE external_ref = $1 FOR UPDATE",  # noqa: S608 -- columns are a module constant; values are bind parameters
            external_ref,
        )
    return OrderRow.from_record(row) if row else None


async def record_decision(
    conn: Connection,
    order: OrderRow,
    decision: Decision,
    *,
    event: str,
    actor: str,
    cause_event_id: uuid.UUID | None,
    reason: str | None,
    needs_attention: bool | None = None,
) -> None:
    """Apply a decision to the order row (if it applies) and put it on the timeline either way."""
    after = decision.after
    # The order row's change (if any) and the timeline entry in one statement: one round trip.
    if decision.applied:
        change = """
            UPDATE orders SET state = $5, fulfilment_status = $6, status_reason = $11,
                   needs_attention = COALESCE($12::boolean, needs_attention), updated_at = now()
             WHERE order_id = $1
        """
    elif decision.late:
        change = "UPDATE orders SET late_events = late_events + 1, updated_at = now() WHERE order_id = $1"
    else:
        change = "SELECT 1"
    await conn.execute(
        f"""
        WITH change AS ({change})
        INSERT INTO order_timeline (order_id, event, applied, late, state, fulfilment_status, previous_state,
                                    previous_fulfilment_status, actor, cause_event_id, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        """,  # noqa: S608 -- the CTE is one of three literal statements; values are bind parameters
        order.order_id,
        event,
        decision.applied,
        decision.late,
        str(after.state),
        str(after.fulfilment) if after.fulfilment else None,
        str(decision.before.state),
        str(decision.before.fulfilment) if decision.before.fulfilment else None,
        actor,
        cause_event_id,
        _timeline_reason(decision, reason),
        *((needs_attention,) if decision.applied else ()),
    )


@dataclass(frozen=True)
class Entry:
    """One event met by one order: the decision, and what goes on the timeline."""

    order: OrderRow
    decision: Decision
    event: str
    actor: str
    cause_event_id: uuid.UUID | None
    reason: str | None
    needs_attention: bool | None = None


async def lock_orders(conn: Connection, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, OrderRow]:
    """Lock several orders at once, always in the same order (two batches never deadlock)."""
    rows = await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ANY($1::uuid[]) ORDER BY order_id FOR UPDATE",  # noqa: S608 -- columns are a module constant; values are bind parameters
        sorted(set(order_ids)),
    )
    return {r["order_id"]: OrderRow.from_record(r) for r in rows}


_RECORD_DECISIONS = """
    WITH change AS (
        UPDATE orders AS o
           SET state = CASE WHEN u.applied THEN u.state ELSE o.state END,
               fulfilment_status = CASE WHEN u.applied THEN u.fulfilment ELSE o.fulfilment_status END,
               status_reason = CASE WHEN u.applied THEN u.reason ELSE o.status_reason END,
               needs_attention = CASE WHEN u.applied THEN COALESCE(u.attention, o.needs_attention)
                                      ELSE o.needs_attention END,
               late_events = o.late_events + u.late,
               updated_at = now()
          FROM unnest($1::uuid[], $2::boolean[], $3::text[], $4::text[], $5::text[], $6::boolean[],
                      $7::int[]) AS u(order_id, applied, state, fulfilment, reason, attention, late)
         WHERE o.order_id = u.order_id
    )
    INSERT INTO order_timeline (order_id, event, applied, late, state, fulfilment_status, previous_state,
                                previous_fulfilment_status, actor, cause_event_id, reason)
    SELECT t.order_id, t.event, t.applied, t.late, t.state, t.fulfilment_status, t.previous_state,
           t.previous_fulfilment_status, t.actor, t.cause_event_id, t.reason
      FROM unnest($8::uuid[], $9::text[], $10::boolean[], $11::boolean[], $12::text[], $13::text[],
                  $14::text[], $15::text[], $16::text[], $17::uuid[], $18::text[]) WITH ORDINALITY
           AS t(order_id, event, applied, late, state, fulfilment_status, previous_state,
                previous_fulfilment_status, actor, cause_event_id, reason, n)
     ORDER BY t.n
"""


async def record_decisions(conn: Connection, entries: Sequence[Entry]) -> None:
    """`record_decision` for many entries, in their order, in one statement: each order row ends as
    its last applied decision left it (late ones counted), and every entry is on the timeline."""
    if not entries:
        return
    touched = _order_changes(entries)

    def fulfilment(status: Status) -> str | None:
        return str(status.fulfilment) if status.fulfilment else None

    await conn.execute(
        _RECORD_DECISIONS,
        [order_id for order_id, _, _ in touched],
        [a is not None for _, a, _ in touched],
        [str(a.decision.after.state) if a else None for _, a, _ in touched],
        [fulfilment(a.decision.after) if a else None for _, a, _ in touched],
        [a.reason if a else None for _, a, _ in touched],
        [a.needs_attention if a else None for _, a, _ in touched],
        [late for _, _, late in touched],
        [e.order.order_id for e in entries],
        [e.event for e in entries],
        [e.decision.applied for e in entries],
        [e.decision.late for e in entries],
        [str(e.decision.after.state) for e in entries],
        [fulfilment(e.decision.after) for e in entries],
        [str(e.decision.before.state) for e in entries],
        [fulfilment(e.decision.before) for e in entries],
        [e.actor for e in entries],
        [e.cause_event_id for e in entries],
        [_timeline_reason(e.decision, e.reason) for e in entries],
    )


def _order_changes(entries: Sequence[Entry]) -> list[tuple[uuid.UUID, Entry | None, int]]:
    """Per order the entries change: its last applied entry (if any) and how many late events it met."""
    final: dict[uuid.UUID, tuple[Entry | None, int]] = {}
    for e in entries:
        applied, late = final.get(e.order.order_id, (None, 0))
        if e.decision.applied:
            applied = e
        elif e.decision.late:
            late += 1
        final[e.order.order_id] = (applied, late)
    return [(order_id, applied, late) for order_id, (applied, late) in final.items() if applied or late]


def _timeline_reason(decision: Decision, reason: str | None) -> str | None:
    if decision.applied:
        return reason
    return decision.note if reason is None else f"{reason} ({decision.note})"


# Queries


async def fetch_order(conn: Connection, ref: str) -> dict[str, Any] | None:
    try:
        order_id: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        order_id = None
    if order_id is not None:
        row = await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1", order_id)  # noqa: S608 -- columns are a module constant; values are bind parameters
    else:
        row = await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE booking_id = $1", ref.upper())  # noqa: S608 -- columns are a module constant; values are bind parameters
    if row is None:
        return None
    timeline = await conn.fetch(
        "SELECT at, event, applied, late, state, fulfilment_status, previous_state,"
        " previous_fulfilment_status, actor, cause_event_id, reason"
        " FROM order_timeline WHERE order_id = $1 ORDER BY id",
        row["order_id"],
    )
    return {**dict(row), "timeline": [dict(t) for t in timeline]}


@dataclass(frozen=True)
class OrderFilter:
    state: OrderState | None = None
    fulfilment_status: FulfilmentStatus | None = None
    campaign_id: str | None = None
    member_id: str | None = None
    source: OrderSource | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    needs_attention: bool | None = None
    test: bool | None = None

    def where(self) -> tuple[list[str], list[Any]]:
        """A condition per filter given (the column equal to it, but for the creation period's ends)."""
        clauses: list[str] = []
        args: list[Any] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                args.append(_plain(value))
                condition = _PERIOD_CONDITIONS.get(f.name, f"{f.name} = {{}}")
                clauses.append(condition.format(f"${len(args)}"))
        return clauses, args


_PERIOD_CONDITIONS = {"created_from": "created_at >= {}", "created_to": "created_at < {}"}


async def cancel_candidates(
    conn: Connection, flt: OrderFilter, *, cap: int
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """For a bulk cancel: how many orders match `flt` per state (counting stops past `cap`) and, when
    no more than `cap` match, the pending ones, oldest first."""
    clauses, args = flt.where()
    where = " AND ".join(clauses) or "true"
    rows = await conn.fetch(
        f"SELECT state, count(*)::int AS n FROM (SELECT state FROM orders WHERE {where} LIMIT {cap + 1}) m"  # noqa: S608 -- WHERE from OrderFilter's fixed fragments, LIMIT an int setting; values are bind parameters
        " GROUP BY state",
        *args,
    )
    counts = {r["state"]: r["n"] for r in rows}
    if sum(counts.values()) > cap:
        return counts, []
    pending = await conn.fetch(
        f"SELECT order_id, booking_id, external_ref, campaign_id, member_id, fulfilment_status FROM orders"  # noqa: S608 -- WHERE from OrderFilter's fixed fragments; values are bind parameters
        f" WHERE {where} AND state = 'pending' ORDER BY created_at, order_id",
        *args,
    )
    return counts, [dict(r) for r in pending]


SORT_KEYS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "state": "state",
    "fulfilment_status": "coalesce(fulfilment_status, '')",
}
"""What each listing sort orders by (then by order id); an order without a fulfilment status sorts first."""


def sort_value(row: asyncpg.Record, sort_column: str) -> datetime | str:
    """The row's value of the sort key, as the keyset cursor carries it."""
    value = row[sort_column]
    return "" if value is None else value


async def list_orders(
    conn: Connection,
    flt: OrderFilter,
    *,
    sort_column: str,
    descending: bool,
    limit: int,
    after: tuple[datetime | str, uuid.UUID] | None,
) -> tuple[list[asyncpg.Record], int]:
    """One page in a stable order (sort key, then order id) and the exact total for the filter."""
    key = SORT_KEYS[sort_column]
    clauses, args = flt.where()
    total = await conn.fetchval(
        "SELECT count(*) FROM orders" + (" WHERE " + " AND ".join(clauses) if clauses else ""),  # noqa: S608 -- WHERE from OrderFilter's fixed fragments; values are bind parameters
        *args,
    )
    page_clauses, page_args = list(clauses), list(args)
    if after is not None:
        page_args += [after[0], after[1]]
        op = "<" if descending else ">"
        page_clauses.append(f"({key}, order_id) {op} (${len(page_args) - 1}, ${len(page_args)})")
    direction = "DESC" if descending else "ASC"
    page_args.append(limit)
    rows = await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders"  # noqa: S608 -- WHERE from OrderFilter's fragments, ORDER BY from SORT_KEYS; values are bind parameters
        + (" WHERE " + " AND ".join(page_clauses) if page_clauses else "")
        + f" ORDER BY {key} {direction}, order_id {direction} LIMIT ${len(page_args)}",
        *page_args,
    )
    return list(rows), int(total)


def export_query(flt: OrderFilter, *, sort_column: str, descending: bool) -> tuple[str, list[Any]]:
    """Every order matching `flt` in the listing's order (sort key, then order id): SQL and args."""
    key = SORT_KEYS[sort_column]
    clauses, args = flt.where()
    direction = "DESC" if descending else "ASC"
    return (
        f"SELECT {ORDER_COLUMNS} FROM orders"  # noqa: S608 -- WHERE from OrderFilter's fragments, ORDER BY from SORT_KEYS; values are bind parameters
        + (" WHERE " + " AND ".join(clauses) if clauses else "")
        + f" ORDER BY {key} {direction}, order_id {direction}",
        args,
    )


async def summary(conn: Connection, campaign_id: str | None) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
            SELECT campaign_id, state, fulfilment_status, test, count(*) AS n,
                   count(*) FILTER (WHERE needs_attention) AS attention
              FROM orders WHERE ($1::text IS NULL OR campaign_id = $1)
             GROUP BY campaign_id, state, fulfilment_status, test
            """,
            campaign_id,
        )
    )


async def first_rows(conn: Connection, batch_id: uuid.UUID, refs: Sequence[str]) -> dict[str, int]:
    """The first row of the batch that carries each of these references."""
    rows = await conn.fetch(
        "SELECT external_ref, min(row_number) AS first FROM ipa_batch_rows"
        " WHERE batch_id = $1 AND external_ref = ANY($2::text[]) GROUP BY external_ref",
        batch_id,
        list(refs),
    )
    return {r["external_ref"]: r["first"] for r in rows}


async def accepted_records(conn: Connection, refs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Where each of these references was accepted before (source, batch and row, order, when)."""
    if not refs:
        return {}
    rows = await conn.fetch(
        "SELECT external_ref, source, batch_id, row_number, order_id, accepted_at FROM ipa_records"
        " WHERE external_ref = ANY($1::text[])",
        list(refs),
    )
    return {r["external_ref"]: dict(r) for r in rows}


@dataclass(frozen=True)
class IpaRecordRow:
    external_ref: str
    source: str
    batch_id: uuid.UUID | None
    batch_ref: str | None
    row_number: int | None
    event_id: uuid.UUID | None
    member_id: str
    campaign_id: str
    reward_type: RewardType
    amount: Decimal
    currency: str | None
    order_id: uuid.UUID | None
    test: bool


async def insert_ipa_records(conn: Connection, records: Sequence[IpaRecordRow]) -> set[str]:
    """Accept the records whose reference was never accepted; the references accepted now."""
    rows = await conn.fetch(
        """
        INSERT INTO ipa_records (external_ref, source, batch_id, batch_ref, row_number, event_id,
                                 member_id, campaign_id, reward_type, amount, currency, order_id, test)
        SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::int[], $6::uuid[],
                             $7::text[], $8::text[], $9::text[], $10::numeric[], $11::text[], $12::uuid[],
                             $13::boolean[])
        ON CONFLICT (external_ref) DO NOTHING
        RETURNING external_ref
        """,
        *columns(records, [f.name for f in fields(IpaRecordRow)]),
    )
    return {r["external_ref"] for r in rows}

"""The join of delivery.requested and voucher.issued, order state, member contacts and templated
messages: what the Kafka handlers write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from chassis.db import Connection
from chassis.wakeups import notify_after_commit
from contracts.values import Channel

WAKE_CHANNEL = "orchard_delivery_due"


@dataclass(frozen=True)
class RequestDetails:
    order_id: uuid.UUID
    booking_id: str
    member_id: str
    campaign_id: str
    channel: Channel
    name: str | None
    email: str | None
    phone: str | None
    locale: str
    template: str | None
    correlation_id: str
    test: bool = False


@dataclass(frozen=True)
class VoucherDetails:
    order_id: uuid.UUID
    campaign_id: str
    code_id: uuid.UUID
    sealed_code: bytes
    masked_code: str
    face_value: Decimal
    currency: str
    expires_at: datetime | None
    correlation_id: str


async def record_request(conn: Connection, r: RequestDetails) -> None:
    """The recipient half of the join; a repeated request for the same order changes nothing."""
    await record_requests(conn, [r])


async def record_voucher(conn: Connection, v: VoucherDetails) -> None:
    """The code half of the join; kept sealed, and not at all for an order already cancelled."""
    await record_vouchers(conn, [v])


async def queue_if_ready(conn: Connection, order_id: uuid.UUID, traceparent: str | None = None) -> bool:
    """Both halves here and the order not cancelled: the delivery becomes due now, and workers wake."""
    return await queue_all_ready(conn, [order_id], [traceparent]) > 0


async def record_order_state(conn: Connection, order_id: uuid.UUID, campaign_id: str, state: str) -> bool:
    """Follow the order; on cancellation stop the delivery and drop its code. True if it was cancelled now.

    No row lock is held across a send: a delivery being sent right now is cancelled at once, and the
    send's recording then sees it (no retry, no fallback; a message that did go out stays `sent`)."""
    return bool(await record_order_states(conn, [(order_id, campaign_id, state)]))


async def remember_contacts(
    conn: Connection,
    member_id: str,
    *,
    name: str | None,
    email: str | None,
    phone: str | None,
    locale: str | None,
) -> None:
    """The latest details per member; a missing field keeps the one known before. Not for members listed
    in the directory, whose entry only HR, imports and corrections change."""
    await remember_many_contacts(conn, [ContactDetails(member_id, name, email, phone, locale)])


async def contacts_of(conn: Connection, member_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM member_contacts WHERE member_id = $1", member_id)


@dataclass(frozen=True)
class MessageDetails:
    message_id: uuid.UUID
    member_id: str
    channel: Channel
    template: str
    locale: str
    sealed_params: bytes
    name: str | None
    email: str | None
    phone: str | None
    correlation_id: str


async def queue_message(conn: Connection, m: MessageDetails) -> bool:
    """Queue a templated message once per message_id; False for a repeat."""
    channel = await conn.fetchval(
        """
        INSERT INTO deliveries (delivery_id, kind, message_id, member_id, requested_channel, channel,
                                recipient_name, email, phone, locale, template, has_request,
                                code_ciphertext, has_voucher, status, next_attempt_at, correlation_id)
        VALUES ($1, 'message', $2, $3, $4, $4, $5, $6, $7, $8, $9, true, $10, true, 'queued', now(), $11)
        ON CONFLICT (message_id) DO NOTHING
        RETURNING channel
        """,
        uuid.uuid4(),
        m.message_id,
        m.member_id,
        m.channel.value,
        m.name,
        m.email,
        m.phone,
        m.locale,
        m.template,
        m.sealed_params,
        m.correlation_id,
    )
    if channel is not None:
        await notify_after_commit(conn, WAKE_CHANNEL, channel)
    return channel is not None


_Half = TypeVar("_Half", "RequestDetails", "VoucherDetails")


# The join's statements take a whole batch of events (the consumers' batch handlers: a batch costs a
# few statements); the single-event functions above are these with one event. Each ends as the events
# applied one after the other would.


def _columns(items: Sequence[object], *fields: str) -> list[list[Any]]:
    """One array per field, in the order given: the parameters of an `unnest(...)` statement."""
    return [[getattr(item, field) for item in items] for field in fields]


def _first_per_order(items: Sequence[_Half]) -> list[_Half]:
    """The first event per order: only the first half of each kind counts (`WHERE NOT has_…`)."""
    seen: dict[uuid.UUID, _Half] = {}
    for item in items:
        seen.setdefault(item.order_id, item)
    return list(seen.values())


async def record_requests(conn: Connection, requests: Sequence[RequestDetails]) -> None:
    rs = _first_per_order(requests)
    await conn.execute(
        """
        INSERT INTO deliveries (delivery_id, order_id, booking_id, member_id, campaign_id, requested_channel,
                                channel, recipient_name, email, phone, locale, template, has_request,
                                correlation_id, test)
        SELECT r.delivery_id, r.order_id, r.booking_id, r.member_id, r.campaign_id, r.channel, r.channel,
               r.name, r.email, r.phone, r.locale, r.template, true, r.correlation_id, r.test
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                      $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::boolean[])
               AS r(delivery_id, order_id, booking_id, member_id, campaign_id, channel, name, email, phone,
                    locale, template, correlation_id, test)
        ON CONFLICT (order_id) DO UPDATE SET
            booking_id = EXCLUDED.booking_id, member_id = EXCLUDED.member_id,
            campaign_id = coalesce(deliveries.campaign_id, EXCLUDED.campaign_id),
            requested_channel = EXCLUDED.requested_channel, channel = EXCLUDED.channel,
            recipient_name = EXCLUDED.recipient_name, email = EXCLUDED.email, phone = EXCLUDED.phone,
            locale = EXCLUDED.locale, template = EXCLUDED.template, has_request = true, test = EXCLUDED.test,
            correlation_id = coalesce(deliveries.correlation_id, EXCLUDED.correlation_id),
            updated_at = now()
        WHERE NOT deliveries.has_request
        """,
        [uuid.uuid4() for _ in rs],
        *_columns(rs, "order_id", "booking_id", "member_id", "campaign_id"),
        [r.channel.value for r in rs],
        *_columns(rs, "name", "email", "phone", "locale", "template", "correlation_id", "test"),
    )


@dataclass(frozen=True)
class ContactDetails:
    member_id: str
    name: str | None
    email: str | None
    phone: str | None
    locale: str | None


async def remember_many_contacts(conn: Connection, contacts: Sequence[ContactDetails]) -> None:
    """`remember_contacts` for each in turn: per member and field, the last value given wins. A member
    listed in the directory (members/) keeps its entry: the contacts an order carries do not change it."""
    latest: dict[str, dict[str, str | None]] = {}
    for c in contacts:
        known = latest.setdefault(c.member_id, {"name": None, "email": None, "phone": None, "locale": None})
        for field, value in (("name", c.name), ("email", c.email), ("phone", c.phone), ("locale", c.locale)):
            if value is not None:
                known[field] = value
    await conn.execute(
        """
        INSERT INTO member_contacts (member_id, name, email, phone, locale)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        ON CONFLICT (member_id) DO UPDATE SET
            name = coalesce(EXCLUDED.name, member_contacts.name),
            email = coalesce(EXCLUDED.email, member_contacts.email),
            phone = coalesce(EXCLUDED.phone, member_contacts.phone),
            locale = coalesce(EXCLUDED.locale, member_contacts.locale),
            updated_at = now()
        WHERE NOT member_contacts.listed
        """,
        list(latest),
        *([known[field] for known in latest.values()] for field in ("name", "email", "phone", "locale")),
    )


async def record_vouchers(conn: Connection, vouchers: Sequence[VoucherDetails]) -> None:
    """As the events one by one: each order's first code replaces one it already held, or is recorded;
    a later code for the same order in the batch (a replacement) then replaces it, the last one winning."""
    vs = _first_per_order(vouchers)
    await _replace_codes(conn, vs)
    await _insert_vouchers(conn, vs)
    first = {v.order_id: v for v in vs}
    last = {v.order_id: v for v in vouchers}
    later = [v for order_id, v in last.items() if v is not first[order_id]]
    if later:
        await _replace_codes(conn, later)


_CODE_FIELDS = ("code_id", "sealed_code", "masked_code", "face_value", "currency", "expires_at")
"""The code a voucher carries, in the order both statements writing it take its columns."""


async def _insert_vouchers(conn: Connection, vs: Sequence[VoucherDetails]) -> None:
    await conn.execute(
        """
        INSERT INTO deliveries (delivery_id, order_id, campaign_id, code_id, code_ciphertext, masked_code,
                                face_value, currency, expires_at, has_voucher, correlation_id)
        SELECT v.delivery_id, v.order_id, v.campaign_id, v.code_id, v.sealed, v.masked_code, v.face_value,
               v.currency, v.expires_at, true, v.correlation_id
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::bytea[], $6::text[], $7::numeric[],
                      $8::text[], $9::timestamptz[], $10::text[])
               AS v(delivery_id, order_id, campaign_id, code_id, sealed, masked_code, face_value, currency,
                    expires_at, correlation_id)
        ON CONFLICT (order_id) DO UPDATE SET
            campaign_id = coalesce(deliveries.campaign_id, EXCLUDED.campaign_id),
            code_id = EXCLUDED.code_id,
            code_ciphertext = CASE WHEN deliveries.order_state = 'cancelled' THEN NULL
                                   ELSE EXCLUDED.code_ciphertext END,
            masked_code = EXCLUDED.masked_code, face_value = EXCLUDED.face_value,
            currency = EXCLUDED.currency, expires_at = EXCLUDED.expires_at, has_voucher = true,
            correlation_id = coalesce(deliveries.correlation_id, EXCLUDED.correlation_id),
            updated_at = now()
        WHERE NOT deliveries.has_voucher
        """,
        [uuid.uuid4() for _ in vs],
        *_columns(vs, "order_id", "campaign_id", *_CODE_FIELDS, "correlation_id"),
    )


async def _replace_codes(conn: Connection, vs: Sequence[VoucherDetails]) -> None:
    """A code for an order that already holds another one replaces it (the old one was voided after a
    recovery): the old ciphertext is dropped, and a delivery already sent or failed starts a new send
    round with the fresh code. A delivery being sent right now keeps its round (its worker owns it)."""
    channels = await conn.fetch(
        """
        WITH t AS (
            SELECT d.delivery_id, v.*, d.status IN ('sent', 'failed') AS again
              FROM deliveries d
              JOIN unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::text[], $5::numeric[], $6::text[],
                          $7::timestamptz[]) AS v(order_id, code_id, sealed, masked_code, face_value,
                                                  currency, expires_at) USING (order_id)
             WHERE d.has_voucher AND d.code_id IS DISTINCT FROM v.code_id
               AND d.status <> 'cancelled' AND d.order_state IS DISTINCT FROM 'cancelled'
               FOR UPDATE OF d
        )
        UPDATE deliveries d
           SET code_id = t.code_id, code_ciphertext = t.sealed, masked_code = t.masked_code,
               face_value = t.face_value, currency = t.currency, expires_at = t.expires_at,
               status = CASE WHEN t.again THEN 'queued' ELSE d.status END,
               send_round = d.send_round + CASE WHEN t.again THEN 1 ELSE 0 END,
               channel = CASE WHEN t.again THEN d.requested_channel ELSE d.channel END,
               channel_attempts = CASE WHEN t.again THEN 0 ELSE d.channel_attempts END,
               tried_channels = CASE WHEN t.again THEN '{}' ELSE d.tried_channels END,
               next_attempt_at = CASE WHEN t.again THEN now() ELSE d.next_attempt_at END,
               failed_at = CASE WHEN t.again THEN NULL ELSE d.failed_at END,
               updated_at = now()
          FROM t WHERE d.delivery_id = t.delivery_id
        RETURNING d.channel, d.status
        """,
        *_columns(vs, "order_id", *_CODE_FIELDS),
    )
    for channel in {r["channel"] for r in channels if r["status"] == "queued" and r["channel"]}:
        await notify_after_commit(conn, WAKE_CHANNEL, channel)


async def drop_code(conn: Connection, order_id: uuid.UUID, code_id: uuid.UUID) -> bool:
    """The order no longer holds this code (recovered, voided): its ciphertext goes, so neither a retry
    nor a resend can send it. False when the delivery holds another code (or none)."""
    dropped = await conn.fetchval(
        "UPDATE deliveries SET code_ciphertext = NULL, updated_at = now()"
        " WHERE order_id = $1 AND code_id = $2 AND code_ciphertext IS NOT NULL RETURNING true",
        order_id,
        code_id,
    )
    return bool(dropped)


async def queue_all_ready(
    conn: Connection, order_ids: Sequence[uuid.UUID], traceparents: Sequence[str | None] | None = None
) -> int:
    """`queue_if_ready` for many orders; the workers of each channel concerned are woken once. A
    delivery made due keeps the trace context given with its order (that of the event that completed
    the join), so its sends join the allocation's trace."""
    tps = list(traceparents) if traceparents is not None else [None] * len(order_ids)
    channels = await conn.fetch(
        """
        UPDATE deliveries d SET status = 'queued', next_attempt_at = now(), updated_at = now(),
               traceparent = coalesce(t.traceparent, d.traceparent)
          FROM (SELECT DISTINCT ON (order_id) order_id, traceparent
                  FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS u(order_id, traceparent, n)
                 ORDER BY order_id, n DESC) AS t
         WHERE d.order_id = t.order_id AND d.status = 'waiting' AND d.has_request AND d.has_voucher
           AND d.order_state IS DISTINCT FROM 'cancelled'
        RETURNING d.channel
        """,
        list(order_ids),
        tps,
    )
    for channel in sorted({r["channel"] for r in channels}):
        await notify_after_commit(conn, WAKE_CHANNEL, channel)
    return len(channels)


async def record_order_states(
    conn: Connection, states: Sequence[tuple[uuid.UUID, str, str]]
) -> list[uuid.UUID]:
    """`record_order_state` for (order_id, campaign_id, state) in turn: a cancellation is final, so per
    order it is the first cancellation if there is one, else the last state. Returns the orders whose
    delivery was cancelled now."""
    last: dict[uuid.UUID, str] = {}
    cancelled: dict[uuid.UUID, str] = {}
    for order_id, campaign_id, state in states:
        if state == "cancelled":
            cancelled.setdefault(order_id, campaign_id)
        else:
            last[order_id] = state
    following = {o: s for o, s in last.items() if o not in cancelled}
    if following:
        await conn.execute(
            """
            UPDATE deliveries d SET order_state = s.state, updated_at = now()
              FROM unnest($1::uuid[], $2::text[]) AS s(order_id, state)
             WHERE d.order_id = s.order_id AND d.order_state IS DISTINCT FROM 'cancelled'
            """,
            list(following),
            list(following.values()),
        )
    if not cancelled:
        return []
    rows = await conn.fetch(
        """
        INSERT INTO deliveries (delivery_id, order_id, campaign_id, order_state, status)
        SELECT c.delivery_id, c.order_id, c.campaign_id, 'cancelled', 'cancelled'
          FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS c(delivery_id, order_id, campaign_id)
        ON CONFLICT (order_id) DO UPDATE SET
            order_state = 'cancelled',
            status = CASE WHEN deliveries.status = 'sent' THEN 'sent' ELSE 'cancelled' END,
            code_ciphertext = NULL, next_attempt_at = NULL, updated_at = now()
        RETURNING order_id, status
        """,
        [uuid.uuid4() for _ in cancelled],
        list(cancelled),
        list(cancelled.values()),
    )
    return [r["order_id"] for r in rows if r["status"] == "cancelled"]

"""IPA intake, whatever the way in: validate records against the campaign view and history, accept the
valid ones (voucher → order, points → accepted record for the wallet) and announce every outcome.

A repeated `external_ref` never becomes a second reward: `ipa_records` has it as primary key, so even two
batches racing each other cannot both accept it; the loser is rejected as a duplicate of the winner.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chassis.db import Connection
from chassis.outbox import OutgoingEvent, add_to_outbox
from contracts.ipa import FieldError, IpaRecordAccepted, IpaRecordRejected
from contracts.orders import OrderSource
from contracts.topics import Topics
from contracts.values import RewardType

from . import repository
from .metrics import IPA_RECORDS
from .orders import Cause, Recipient, create_orders
from .repository import NewOrder
from .validation import RecordError, ValidRecord, duplicate_in_file, duplicate_of, validate_record


@dataclass
class Candidate:
    """One record to judge: its cells as received, where it came from, and problems found while reading."""

    cells: Mapping[str, Any]
    row_number: int | None = None
    errors: list[RecordError] = field(default_factory=list)
    record: ValidRecord | None = None
    order_id: uuid.UUID | None = None
    accepted: bool = False
    first_row: int | None = None  # of the batch rows with this reference, when read with them
    cause: Cause | None = None  # its own event, when candidates from several events are judged together

    @property
    def external_ref(self) -> str | None:
        ref = self.cells.get("external_ref")
        return ref.strip() or None if isinstance(ref, str) else None


async def validate(conn: Connection, candidates: Sequence[Candidate], *, batch_id: uuid.UUID | None) -> None:
    """Fill each candidate's `record` (valid) or `errors` (every problem, duplicates included)."""
    campaign_ids = [
        c.cells["campaign_id"].strip() for c in candidates if isinstance(c.cells.get("campaign_id"), str)
    ]
    campaigns = await repository.load_campaigns(conn, campaign_ids)
    refs = sorted({ref for c in candidates if (ref := c.external_ref)})
    first_rows: dict[str, int] = {
        ref: c.first_row for c in candidates if c.first_row is not None and (ref := c.external_ref)
    }
    if batch_id is not None and refs and len(first_rows) < len(refs):
        first_rows = {
            r["external_ref"]: r["first"]
            for r in await conn.fetch(
                "SELECT external_ref, min(row_number) AS first FROM ipa_batch_rows"
                " WHERE batch_id = $1 AND external_ref = ANY($2::text[]) GROUP BY external_ref",
                batch_id,
                refs,
            )
        }
    history = await _originals(conn, refs)
    for c in candidates:
        outcome = validate_record(c.cells, campaigns)
        errors = [*c.errors, *outcome.errors]
        ref = c.external_ref
        if ref is not None and c.row_number is not None and first_rows.get(ref, c.row_number) < c.row_number:
            errors.append(duplicate_in_file(first_rows[ref]))
        elif ref is not None and ref in history:
            errors.append(duplicate_of(history[ref]))
        c.errors = errors
        c.record = None if errors else outcome.record


async def _originals(conn: Connection, refs: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    if not refs:
        return {}
    rows = await conn.fetch(
        "SELECT external_ref, source, batch_id, row_number, order_id, accepted_at FROM ipa_records"
        " WHERE external_ref = ANY($1::text[])",
        list(refs),
    )
    return {r["external_ref"]: dict(r) for r in rows}


async def accept(
    conn: Connection,
    candidates: Sequence[Candidate],
    *,
    source: str,
    cause: Cause,
    batch_id: uuid.UUID | None = None,
    order_source: OrderSource = OrderSource.IPA,
) -> None:
    """Accept every candidate that has a valid record. One that loses a race for its reference gets a
    `duplicate` error instead; the caller reports it with the rejected ones. IPA records are announced
    on `ipa.record_accepted`; orders placed through the API only by their `order.state_changed`."""
    valid = [c for c in candidates if c.record is not None]
    if not valid:
        return
    for c in valid:
        assert c.record is not None
        c.order_id = uuid.uuid4() if c.record.reward_type is RewardType.VOUCHER else None
    records = [c.record for c in valid if c.record is not None]
    inserted = {
        r["external_ref"]
        for r in await conn.fetch(
            """
            INSERT INTO ipa_records (external_ref, source, batch_id, batch_ref, row_number, event_id,
                                     member_id, campaign_id, reward_type, amount, currency, order_id, test)
            SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::int[], $6::uuid[],
                                 $7::text[], $8::text[], $9::text[], $10::numeric[], $11::text[], $12::uuid[],
                                 $13::boolean[])
            ON CONFLICT (external_ref) DO NOTHING
            RETURNING external_ref
            """,
            [r.external_ref for r in records],
            [source] * len(records),
            [batch_id] * len(records),
            [r.batch_ref for r in records],
            [c.row_number for c in valid],
            [(c.cause or cause).event_id for c in valid],
            [r.member_id for r in records],
            [r.campaign_id for r in records],
            [str(r.reward_type) for r in records],
            [r.amount for r in records],
            [r.currency for r in records],
            [c.order_id for c in valid],
            [r.test for r in records],
        )
    }
    lost = [c for c in valid if c.record is not None and c.record.external_ref not in inserted]
    if lost:
        originals = await _originals(conn, [c.record.external_ref for c in lost if c.record])
        for c in lost:
            assert c.record is not None
            c.errors = [duplicate_of(originals[c.record.external_ref])]
            c.record, c.order_id = None, None
    won = [c for c in valid if c.record is not None]
    for c in won:
        c.accepted = True
    batch_ref = str(batch_id) if batch_id else None
    accepted_events = []
    if order_source is OrderSource.IPA:
        for c in won:
            assert c.record is not None
            r = c.record
            accepted_events.append(
                OutgoingEvent(
                    r.external_ref,
                    (c.cause or cause).new_envelope(
                        Topics.IPA_RECORD_ACCEPTED,
                        IpaRecordAccepted(
                            external_ref=r.external_ref,
                            batch_id=r.batch_ref or batch_ref,
                            member_id=r.member_id,
                            campaign_id=r.campaign_id,
                            reward_type=r.reward_type,
                            amount=r.amount,
                            currency=r.currency,
                            reason=r.reason,
                            order_id=c.order_id,
                            test=r.test,
                        ),
                    ),
                )
            )
    await create_orders(
        conn,
        [
            (
                NewOrder(
                    order_id=c.order_id,
                    source=order_source,
                    member_id=c.record.member_id,
                    campaign_id=c.record.campaign_id,
                    channel=c.record.channel,
                    amount=c.record.amount,
                    currency=c.record.currency,
                    external_ref=c.record.external_ref,
                    batch_id=batch_id,
                    test=c.record.test,
                ),
                Recipient(name=c.record.name, email=c.record.email, phone=c.record.phone),
                c.cause or cause,
            )
            for c in won
            if c.record is not None and c.order_id is not None
        ],
        also=accepted_events,
    )
    if accepted_events:
        IPA_RECORDS.labels(source, "accepted").inc(len(accepted_events))


def usable_identifier(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and 0 < len(value.strip()) <= 200 else None


async def announce_rejections(
    conn: Connection,
    candidates: Sequence[Candidate],
    *,
    source: str,
    cause: Cause,
    batch_id: uuid.UUID | None = None,
) -> None:
    """`ipa.record_rejected` for each rejected candidate that names a usable reference (the topic is
    keyed by it); the others are only in the batch's error report."""
    events = []
    for c in candidates:
        ref = usable_identifier(c.cells.get("external_ref"))
        if c.accepted or not c.errors or ref is None:
            continue
        batch_ref = usable_identifier(c.cells.get("batch_id")) or (str(batch_id) if batch_id else None)
        events.append(
            OutgoingEvent(
                ref,
                (c.cause or cause).new_envelope(
                    Topics.IPA_RECORD_REJECTED,
                    IpaRecordRejected(
                        external_ref=ref,
                        batch_id=batch_ref,
                        member_id=usable_identifier(c.cells.get("member_id")),
                        campaign_id=usable_identifier(c.cells.get("campaign_id")),
                        errors=tuple(
                            FieldError(field=e.field, code=e.code, message=e.message) for e in c.errors
                        ),
                    ),
                ),
            )
        )
    await add_to_outbox(conn, events)
    IPA_RECORDS.labels(source, "rejected").inc(len(events))

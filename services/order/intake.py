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
from chassis.models import model_from
from chassis.outbox import OutgoingEvent, add_to_outbox
from contracts.ipa import FieldError, IpaRecordAccepted, IpaRecordRejected
from contracts.orders import OrderSource
from contracts.topics import Topics
from contracts.values import RewardType

from . import repository
from .metrics import IPA_RECORDS
from .orders import Cause, Recipient, create_orders
from .repository import IpaRecordRow, NewOrder, built_from
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
        first_rows = await repository.first_rows(conn, batch_id, refs)
    history = await repository.accepted_records(conn, refs)
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
    won = await _claim_references(conn, valid, source=source, cause=cause, batch_id=batch_id)
    accepted_events = (
        [_accepted_event(c, cause, batch_id) for c in won] if order_source is OrderSource.IPA else []
    )
    await create_orders(
        conn,
        [
            (_new_order(c.record, c.order_id, order_source, batch_id), _recipient(c.record), c.cause or cause)
            for c in won
            if c.record is not None and c.order_id is not None
        ],
        also=accepted_events,
    )
    if accepted_events:
        IPA_RECORDS.labels(source, "accepted").inc(len(accepted_events))


async def _claim_references(
    conn: Connection, valid: list[Candidate], *, source: str, cause: Cause, batch_id: uuid.UUID | None
) -> list[Candidate]:
    """Record the valid candidates' references as accepted: those that won them (now `accepted`); one whose
    reference another transaction accepted first is left with a `duplicate` error and no record."""
    inserted = await repository.insert_ipa_records(
        conn,
        [
            built_from(
                IpaRecordRow,
                c.record,
                source=source,
                batch_id=batch_id,
                row_number=c.row_number,
                event_id=(c.cause or cause).event_id,
                order_id=c.order_id,
            )
            for c in valid
            if c.record is not None
        ],
    )
    lost = [c for c in valid if c.record is not None and c.record.external_ref not in inserted]
    if lost:
        originals = await repository.accepted_records(conn, [c.record.external_ref for c in lost if c.record])
        for c in lost:
            assert c.record is not None
            c.errors = [duplicate_of(originals[c.record.external_ref])]
            c.record, c.order_id = None, None
    won = [c for c in valid if c.record is not None]
    for c in won:
        c.accepted = True
    return won


def _accepted_event(c: Candidate, cause: Cause, batch_id: uuid.UUID | None) -> OutgoingEvent:
    assert c.record is not None
    r = c.record
    return OutgoingEvent(
        r.external_ref,
        (c.cause or cause).new_envelope(
            Topics.IPA_RECORD_ACCEPTED,
            model_from(
                IpaRecordAccepted,
                r,
                batch_id=r.batch_ref or (str(batch_id) if batch_id else None),
                order_id=c.order_id,
            ),
        ),
    )


def _new_order(
    record: ValidRecord, order_id: uuid.UUID, source: OrderSource, batch_id: uuid.UUID | None
) -> NewOrder:
    return built_from(NewOrder, record, order_id=order_id, source=source, batch_id=batch_id)


def _recipient(record: ValidRecord) -> Recipient:
    return Recipient(name=record.name, email=record.email, phone=record.phone)


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

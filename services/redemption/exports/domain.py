"""Exports scoped by purpose (data minimisation), and their formats: CSV safe against formula
injection, and JSON lines. Pure, no I/O."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from chassis.auth import Role
from chassis.spreadsheet import spreadsheet_safe


class Purpose(StrEnum):
    PARTNER_SETTLEMENT = "partner_settlement"
    FINANCE_RECONCILIATION = "finance_reconciliation"
    ANALYTICS = "analytics"
    AUDIT = "audit"


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


# Which record a settlement or reconciliation line is, and whose: the columns both start with.
_SETTLED_RECORD = ("record_id", "redeemed_at", "kind", "status", "partner_id", "offer_id", "code_id")

# What each purpose may carry. Member ids appear only in the audit purpose; analytics gets the
# tier/segment token, never the member.
ALLOWED_FIELDS: Mapping[Purpose, tuple[str, ...]] = {
    Purpose.PARTNER_SETTLEMENT: (
        *_SETTLED_RECORD,
        "channel",
        "location",
        "amount",
        "currency",
        "partial",
    ),
    Purpose.FINANCE_RECONCILIATION: (
        *_SETTLED_RECORD,
        "order_id",
        "redemption_id",
        "amount",
        "currency",
        "points",
        "partial",
    ),
    Purpose.ANALYTICS: (
        "redeemed_at",
        "kind",
        "status",
        "partner_id",
        "offer_id",
        "channel",
        "segment_token",
        "validation_method",
        "partial",
        "amount",
        "currency",
        "points",
    ),
    Purpose.AUDIT: (
        "record_id",
        "redeemed_at",
        "kind",
        "status",
        "member_id",
        "segment_token",
        "partner_id",
        "offer_id",
        "code_id",
        "order_id",
        "redemption_id",
        "channel",
        "location",
        "validation_method",
        "amount",
        "currency",
        "points",
        "partial",
        "reason",
    ),
}

ALLOWED_ROLES: Mapping[Purpose, frozenset[Role]] = {
    Purpose.PARTNER_SETTLEMENT: frozenset({Role.PARTNER, Role.FINANCE, Role.ADMIN}),
    Purpose.FINANCE_RECONCILIATION: frozenset({Role.FINANCE, Role.ADMIN}),
    Purpose.ANALYTICS: frozenset({Role.OPS, Role.ADMIN}),
    Purpose.AUDIT: frozenset({Role.AUDITOR, Role.ADMIN}),
}


class FieldsNotAllowed(ValueError):
    def __init__(self, purpose: Purpose, fields: Sequence[str]) -> None:
        super().__init__(f"{purpose} exports may not include {', '.join(fields)}")
        self.fields = tuple(fields)


def choose_fields(purpose: Purpose, requested: Sequence[str] | None) -> tuple[str, ...]:
    """The requested fields (in the purpose's order), all of the purpose's when none are asked for."""
    allowed = ALLOWED_FIELDS[purpose]
    if not requested:
        return allowed
    refused = [f for f in requested if f not in allowed]
    if refused:
        raise FieldsNotAllowed(purpose, refused)
    return tuple(f for f in allowed if f in set(requested))


def render_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(fields)
    for row in rows:
        writer.writerow([spreadsheet_safe(row.get(f)) for f in fields])
    return buffer.getvalue()


def render_jsonl(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    return "".join(json.dumps({f: row.get(f) for f in fields}, separators=(",", ":")) + "\n" for row in rows)


def render(
    rows: Sequence[Mapping[str, Any]], fields: Sequence[str], fmt: ExportFormat, *, first: bool
) -> str:
    if fmt is ExportFormat.CSV:
        return render_csv(rows, fields, header=first)
    return render_jsonl(rows, fields)


MEDIA_TYPES: Mapping[ExportFormat, str] = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson",
}

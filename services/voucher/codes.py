"""Code pools: generation, CSV import, status and history, reveal. Clear codes live only in memory."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chassis.audit import append_audit
from chassis.db import Connection
from chassis.money import with_money_text
from contracts.campaigns import CampaignActivityKind
from contracts.values import RewardType
from contracts.vouchers import ExpiryKind

from . import activity, campaigns
from .crypto import CodeVault
from .csv_import import ParsedFile, RowProblem
from .domain import (
    DEFAULT_ALPHABET,
    CodeNotFound,
    PointsCampaignHasNoCodes,
    generate_codes,
    validate_generation,
)
from .repository import codes as repository
from .repository.codes import StagedRow


@dataclass(frozen=True)
class NewCode:
    row: int
    code: str
    value: Decimal
    expires_at: datetime | None


async def _voucher_campaign(conn: Connection, campaign_id: str) -> campaigns.Campaign:
    campaign = await campaigns.load(conn, campaign_id)
    if campaign.reward_type is RewardType.POINTS:
        raise PointsCampaignHasNoCodes("a points campaign has no codes")
    return campaign


def _fixed_expiry(campaign: campaigns.Campaign) -> datetime | None:
    policy = campaign.expiry_policy
    return policy.expires_at if policy.kind is ExpiryKind.FIXED_DATE else None


def _seal(vault: CodeVault, new_codes: list[NewCode]) -> list[StagedRow]:
    """CPU work (HMAC and AES-GCM per code): run it in a worker thread, never on the event loop."""
    rows: list[StagedRow] = []
    for item in new_codes:
        digest = vault.lookup_hash(item.code)
        sealed = vault.seal(item.code, digest)
        rows.append(
            (item.row, digest, sealed.secret, sealed.key_id, item.code[-4:], item.value, item.expires_at)
        )
    return rows


def _pool_rows(campaign_id: str, rows: list[StagedRow], *, test: bool) -> list[tuple[Any, ...]]:
    # In lookup-hash order, the unique index is filled leaf by leaf instead of at random: several
    # times faster for big chunks, and the pool's issue order stays random all the same.
    return sorted(
        (
            (campaign_id, h, s, k, last4, "generated", test, value, value, exp, exp)
            for _, h, s, k, last4, value, exp in rows
        ),
        key=lambda row: row[1],
    )


GENERATION_CHUNK = 20_000
"""Codes drawn, sealed and copied at a time: memory and each stretch of work are bounded by the chunk,
not by the request."""


@dataclass(frozen=True)
class _Draw:
    campaign_id: str
    length: int
    prefix: str
    alphabet: str
    value: Decimal
    expires_at: datetime | None
    test: bool

    def sealed(self, vault: CodeVault, count: int) -> tuple[list[StagedRow], list[tuple[Any, ...]]]:
        batch = generate_codes(count, length=self.length, prefix=self.prefix, alphabet=self.alphabet)
        rows = _seal(vault, [NewCode(i, code, self.value, self.expires_at) for i, code in enumerate(batch)])
        return rows, _pool_rows(self.campaign_id, rows, test=self.test)


async def _generate_chunk(conn: Connection, vault: CodeVault, draw: _Draw, count: int) -> int:
    """Adds `count` new codes; returns how many rounds of drawing it took."""
    created = 0
    rounds = 0
    while created < count:
        rounds += 1
        rows, pool_rows = await asyncio.to_thread(draw.sealed, vault, count - created)
        if rounds == 1 and await repository.copy_into_pool(conn, pool_rows):
            return rounds
        # Some code clashed with one already stored: insert the others, draw again for the clashes.
        del pool_rows
        await repository.stage(conn, rows)
        created += await repository.insert_staged(conn, draw.campaign_id, source="generated", test=draw.test)
    return rounds


async def generate(
    conn: Connection,
    vault: CodeVault,
    campaign_id: str,
    *,
    count: int,
    length: int,
    prefix: str,
    alphabet: str = DEFAULT_ALPHABET,
    test: bool,
    actor: str,
    chunk_size: int = GENERATION_CHUNK,
) -> dict[str, Any]:
    """Adds `count` new unique codes; a rare clash with an existing code is replaced by a fresh one.

    Work goes chunk by chunk, each drawn and sealed in a worker thread, so the event loop keeps serving
    and memory stays that of one chunk. Every chunk is written inside the caller's transaction: the
    pool grows by all `count` codes at commit, or by none.
    """
    campaign = await _voucher_campaign(conn, campaign_id)
    assert campaign.face_value is not None
    validate_generation(count, length, prefix, alphabet)
    draw = _Draw(campaign_id, length, prefix, alphabet, campaign.face_value, _fixed_expiry(campaign), test)
    rounds = 0
    for start in range(0, count, chunk_size):
        rounds += await _generate_chunk(conn, vault, draw, min(chunk_size, count - start))
    await campaigns.audit(
        conn,
        campaign_id,
        actor=actor,
        action="codes.generated",
        details={"count": count, "length": length, "prefix": prefix, "test": test, "rounds": rounds},
    )
    await activity.tell(
        conn,
        CampaignActivityKind.CODES_GENERATED,
        {campaign_id: count},
        actor=actor,
        detail="test codes for UAT" if test else None,
    )
    return {"campaign_id": campaign_id, "generated": count, "test": test}


def _importable(campaign: campaigns.Campaign, parsed: ParsedFile) -> list[NewCode]:
    """The file's codes with the campaign's face value where they name none, expiring at their own
    date or the campaign's fixed one, whichever comes first."""
    assert campaign.face_value is not None
    fixed = _fixed_expiry(campaign)
    return [
        NewCode(
            c.row,
            c.code,
            c.value or campaign.face_value,
            min((e for e in (c.expires_at, fixed) if e is not None), default=None),
        )
        for c in parsed.codes
    ]


def _import_report(
    campaign_id: str, parsed: ParsedFile, imported: int, problems: list[RowProblem]
) -> dict[str, Any]:
    """What an import answers: how many rows went in, how many were rejected and why, row by row."""
    problems = sorted(problems, key=lambda p: p.row)
    tally: dict[str, int] = {}
    for problem in problems:
        tally[problem.code] = tally.get(problem.code, 0) + 1
    return {
        "campaign_id": campaign_id,
        "rows": parsed.rows,
        "imported": imported,
        "rejected": len(problems),
        "duplicates_in_file": tally.get("duplicate_in_file", 0),
        "duplicates_in_pool": tally.get("duplicate_in_pool", 0),
        "invalid": tally.get("invalid_row", 0) + tally.get("already_expired", 0),
        "bad_encoding": tally.get("bad_encoding", 0),
        "problems": [{"row": p.row, "code": p.code, "message": p.message} for p in problems],
    }


async def import_codes(
    conn: Connection, vault: CodeVault, campaign_id: str, parsed: ParsedFile, *, actor: str
) -> dict[str, Any]:
    campaign = await _voucher_campaign(conn, campaign_id)
    new_codes = _importable(campaign, parsed)
    problems = list(parsed.problems)
    imported = 0
    values = {c.value for c in new_codes}
    known = await campaigns.code_values(conn, campaign) if values - {campaign.face_value} else ()
    if new_codes:
        await repository.stage(conn, await asyncio.to_thread(_seal, vault, new_codes))
        imported, clashes = await repository.insert_staged_naming_clashes(
            conn, campaign_id, source="imported"
        )
        problems += [
            RowProblem(row, "duplicate_in_pool", "the code already exists in a code pool") for row in clashes
        ]
    if imported:
        await campaigns.announce_new_values(conn, campaign, values, known, actor=actor)
    report = _import_report(campaign_id, parsed, imported, problems)
    details = {k: v for k, v in report.items() if k != "problems"}
    await campaigns.audit(conn, campaign_id, actor=actor, action="codes.imported", details=details)
    if imported:
        rejected = f"{len(problems)} rows rejected" if problems else None
        await activity.tell(
            conn, CampaignActivityKind.CODES_IMPORTED, {campaign_id: imported}, actor=actor, detail=rejected
        )
    return report


async def find_id(conn: Connection, vault: CodeVault, code: str) -> uuid.UUID:
    code_id = await repository.code_id_by_hash(conn, vault.lookup_hash(code))
    if code_id is None:
        raise CodeNotFound("no such code")
    return code_id


async def status(conn: Connection, code_id: uuid.UUID) -> dict[str, Any]:
    row = await repository.code_row(conn, code_id)
    if row is None:
        raise CodeNotFound(f"code {code_id} does not exist")
    history = await repository.code_history(conn, code_id)
    redemptions = await repository.code_redemptions(conn, code_id)
    money = ("value", "remaining_value", "amount")
    result = with_money_text(row, *money)
    result["masked_code"] = "****-" + result.pop("last4")
    result["history"] = [dict(h) for h in history]
    result["redemptions"] = [with_money_text(r, *money, currency=row["currency"]) for r in redemptions]
    return result


async def reveal(
    conn: Connection,
    vault: CodeVault,
    code_id: uuid.UUID,
    *,
    actor: str,
    reason: str,
    member_id: str | None = None,
) -> str:
    """The clear code, for an authorised reader; every reveal leaves an audit entry.

    `member_id`: the caller is that member and may reveal only a code issued to them.
    """
    row = await repository.sealed_code(conn, code_id)
    if row is None or (member_id is not None and row["member_id"] != member_id):
        raise CodeNotFound(f"code {code_id} does not exist")
    await append_audit(
        conn,
        actor=actor,
        action="code.revealed",
        subject_type="code",
        subject_id=str(code_id),
        details={"reason": reason, "at": datetime.now(UTC)},
    )
    return vault.open(row["key_id"], bytes(row["secret"]), bytes(row["lookup_hash"]))

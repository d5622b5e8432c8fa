"""Member PINs: checking one at a partner, setting it, and the member's own unlock; argon2 work is gated."""

from __future__ import annotations

import asyncio
import functools
import secrets
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.problems import Problem, invalid_field
from services.redemption.audit import audit
from services.redemption.deps import settings
from services.redemption.offers import domain
from services.redemption.offers import repository as repo
from services.redemption.records.domain import Record
from services.redemption.settings import RedemptionSettings

router = APIRouter(tags=["offers"])

T = TypeVar("T")

# The exact reason behind a `pin_rejected`, for the audit log and admins only.
PRECISE_REASONS = {
    domain.PinOutcome.NOT_SET: "no_pin_set",
    domain.PinOutcome.WRONG: "invalid_pin",
    domain.PinOutcome.LOCKED: "pin_locked",
}

# Argon2 -------------------------------------------------------------------------------------------
# Each hash or verification takes tens of MiB; parallel PIN changes must queue, not exhaust memory. One
# gate per event loop (a service process runs one) and per configured size.
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def _gate(concurrency: int) -> asyncio.Semaphore:
    gates = _gates.setdefault(asyncio.get_running_loop(), {})
    return gates.setdefault(concurrency, asyncio.Semaphore(concurrency))


async def run_argon2(work: Callable[[], T], *, concurrency: int) -> T:
    """Run `work` on a thread once fewer than `concurrency` argon2 computations are running. A caller
    cancelled meanwhile does not free its place before its thread is done."""
    gate = _gate(concurrency)
    await gate.acquire()
    try:
        running = asyncio.ensure_future(asyncio.to_thread(work))
    except BaseException:
        gate.release()
        raise

    def finished(future: asyncio.Future[T]) -> None:
        gate.release()
        if not future.cancelled():
            future.exception()  # retrieved: a cancelled caller's failure is not logged as unhandled

    running.add_done_callback(finished)
    return await asyncio.shield(running)


@functools.cache
def _decoy_hash(pepper: bytes) -> str:
    """A hash no PIN matches, verified when there is no PIN to check, so the time taken tells nothing."""
    return domain.hash_pin(secrets.token_hex(16), pepper)


def _verify(pin_hash: str | None, pin: str, pepper: bytes) -> bool:
    """On a thread: check `pin` against the hash, or spend the same time on the decoy."""
    return domain.pin_matches(pin_hash or _decoy_hash(pepper), pin, pepper) and pin_hash is not None


# Checking a PIN at a partner ----------------------------------------------------------------------


@dataclass(frozen=True)
class PinCheck:
    outcome: domain.PinOutcome
    state: domain.PinState | None = None

    @property
    def precise_reason(self) -> str | None:
        return PRECISE_REASONS.get(self.outcome)


def pepper(cfg: RedemptionSettings) -> bytes:
    return cfg.pin_pepper.get_secret_value().encode()


def lockout_policy(cfg: RedemptionSettings) -> domain.PinLockoutPolicy:
    return domain.PinLockoutPolicy(
        max_attempts=cfg.pin_max_attempts,
        first_lockout=timedelta(seconds=cfg.pin_lockout_s),
        longest_lockout=timedelta(seconds=cfg.pin_lockout_max_s),
    )


async def check_pin(
    conn: Connection, cfg: RedemptionSettings, member_id: str, pin: str, now: datetime
) -> PinCheck:
    """How a PIN given at a partner went, its new state saved. Every path runs one argon2 verification,
    so a missing or locked PIN answers as slowly as a wrong one."""
    stored = await repo.lock_pin(conn, member_id)
    if stored is None:
        await run_argon2(
            functools.partial(_verify, None, pin, pepper(cfg)), concurrency=cfg.argon2_concurrency
        )
        return PinCheck(domain.PinOutcome.NOT_SET)
    pin_hash, state = stored
    locked = state.locked_at(now)
    matched = await run_argon2(
        functools.partial(_verify, None if locked else pin_hash, pin, pepper(cfg)),
        concurrency=cfg.argon2_concurrency,
    )
    after, outcome = domain.after_pin_attempt(state, matched=matched, now=now, policy=lockout_policy(cfg))
    if after != state:
        await repo.save_pin_state(conn, member_id, after)
    return PinCheck(outcome, after)


async def audit_rejection(conn: Connection, by: str, record: Record, pin_check: PinCheck) -> None:
    """The exact reason behind a `pin_rejected` redemption, for admins and auditors only."""
    assert record.member_id is not None
    details: dict[str, Any] = {
        "record_id": record.record_id,
        "offer_id": record.offer_id,
        "partner_id": record.partner_id,
        "reason": pin_check.precise_reason,
    }
    if pin_check.state is not None:
        details["lockouts"] = pin_check.state.lockouts
        details["locked_until"] = pin_check.state.locked_until
    await append_audit(
        conn,
        actor=by,
        action="offer.pin_rejected",
        subject_type="member",
        subject_id=record.member_id,
        details=details,
    )


# The member's own PIN -----------------------------------------------------------------------------


class PinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pin: str = Field(min_length=1, max_length=64, description="6 to 12 digits, not a trivial pattern")


@router.put("/v1/members/{member_id}/pin", status_code=204)
async def set_pin(
    member_id: str,
    body: PinIn,
    principal: Annotated[Principal, Depends(require_roles(Role.MEMBER, Role.ADMIN))],
    pool: DbPool,
    cfg: Annotated[RedemptionSettings, Depends(settings)],
) -> Response:
    """Set or change the member's PIN (stored only as an argon2 hash); it also lifts a lockout and
    forgets earlier lockouts."""
    if not (Role.ADMIN in principal.roles or principal.sub == member_id):
        raise Problem(403, "forbidden", detail="A member sets only their own PIN.")
    try:
        domain.check_new_pin(body.pin)
    except domain.WeakPin as exc:
        raise invalid_field("body.pin", "weak_pin", str(exc), problem="weak_pin", detail=str(exc)) from exc
    pin_hash = await run_argon2(
        functools.partial(domain.hash_pin, body.pin, pepper(cfg)), concurrency=cfg.argon2_concurrency
    )
    async with pool.acquire() as conn, conn.transaction():
        await repo.set_pin(conn, member_id, pin_hash)
        # Who changed which member's PIN; never the PIN or its hash.
        await audit(conn, principal.actor, "member", member_id, "pin_set")
    return Response(status_code=204)


@router.post("/v1/members/{member_id}/pin/unlock", status_code=204)
async def unlock_pin(
    member_id: str,
    principal: Annotated[Principal, Depends(require_roles(Role.MEMBER))],
    pool: DbPool,
) -> Response:
    """The member lifts a lock on their own PIN and clears the count of lockouts, keeping the PIN."""
    if principal.sub != member_id:
        raise Problem(403, "forbidden", detail="A member unlocks only their own PIN.")
    async with pool.acquire() as conn, conn.transaction():
        if not await repo.unlock_pin(conn, member_id):
            raise Problem(404, "pin_not_set", detail="There is no PIN to unlock.")
        await audit(conn, principal.actor, "member", member_id, "pin_unlocked")
    return Response(status_code=204)

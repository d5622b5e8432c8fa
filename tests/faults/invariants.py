"""What must hold after every fault scenario, computed from the tables and the sinks — never from what
the services say about themselves — and the table of scenarios printed at the end of the run.

- every accepted record has exactly one order (one per external_ref);
- every order holds at most one code, and no code is in two orders (voucher tables; the code delivery
  sent is the code voucher issued);
- every completed order has exactly one successful send: one succeeded attempt in the delivery tables
  and one file per recipient in the SMTP sink or the fake provider;
- `GET /v1/orders/summary?campaign_id=…` equals the counts in the order table;
- nothing lost: every accepted record ends as a completed order.

Re-sends (messages a sink took more than once, under the same Message-ID or idempotency token) are
reported per scenario when the sinks count repeats (ORCHARD_SINK_COUNT_REPEATS=1): the sinks still keep
one file per message, so they never show as doubled; what bounds them is the delivery design.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from chassis.settings import REPO_ROOT
from contracts.values import Channel
from deploy.sinks.receipts import RECEIPTS_FILE, receipts_in
from services.delivery.settings import DeliverySettings
from tests import pipeline as p
from tests.faults.burst import Burst
from tests.system import System

RESULTS_FILE = REPO_ROOT / "var" / "fault-scenarios.json"


@dataclass
class Outcome:
    """One scenario's figures, and every invariant it broke (empty when all held)."""

    scenario: str
    sent: int
    accepted: int
    completed: int
    lost: int
    doubled: int
    restart_s: float = 0.0
    """How long the recovery step took (restarting what the fault took away)."""
    settle_s: float = 0.0
    """From the end of the recovery step until every accepted record was a completed, delivered order."""
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resent: int | None = None
    """Messages of this burst a sink took again (receipts - distinct messages); None: not counted."""

    @property
    def ok(self) -> bool:
        return not self.violations


RESULTS: list[Outcome] = []
"""Every scenario of this pytest run, in the order they ran (printed by the conftest's summary hook)."""


def record_outcome(outcome: Outcome) -> None:
    RESULTS.append(outcome)


# ------------------------------------------------------------------------------------------- waiting


async def completed_count(system: System, campaign_id: str) -> int:
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        return int(
            await conn.fetchval(
                """SELECT count(*) FROM "order".orders WHERE campaign_id = $1 AND state = 'completed'""",
                campaign_id,
            )
        )
    finally:
        await conn.close()


async def wait_settled(system: System, burst: Burst, *, timeout: float) -> bool:
    """Wait until every record of the burst is a completed order and its send reached its sink; False
    when that did not happen within `timeout` seconds (the invariants then say what is missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done = await completed_count(system, burst.campaign_id) >= len(burst.accepted)
        except (OSError, asyncpg.PostgresError):
            done = False
        if done and _sink_files_seen(system, burst) >= len(burst.accepted):
            return True
        await asyncio.sleep(1.0)
    return False


def _sink_files_seen(system: System, burst: Burst) -> int:
    wanted = {burst.recipient(r) for r in burst.records if r["external_ref"] in burst.accepted}
    seen = set(p.emails_by_recipient(system)) | set(p.messages_by_recipient(system))
    return len(wanted & seen)


# ------------------------------------------------------------------------------------------ checking


async def check(
    system: System, burst: Burst, scenario: str, *, restart_s: float = 0.0, settle_s: float = 0.0
) -> Outcome:
    """Every invariant of the module docstring for one burst, from the tables and the sinks."""
    campaign_id = burst.campaign_id
    accepted = [r for r in burst.records if r["external_ref"] in burst.accepted]
    refs = {r["external_ref"] for r in accepted}
    violations: list[str] = []
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        orders = await conn.fetch(
            """SELECT order_id, external_ref, state, fulfilment_status
                 FROM "order".orders WHERE campaign_id = $1""",
            campaign_id,
        )
        order_ids = [o["order_id"] for o in orders]
        codes = await conn.fetch(
            "SELECT code_id, order_id, status FROM voucher.codes WHERE order_id = ANY($1::uuid[])", order_ids
        )
        issuances = await conn.fetch(
            """SELECT order_id, code_id, released_at FROM voucher.issuances
                WHERE campaign_id = $1 OR order_id = ANY($2::uuid[])""",
            campaign_id,
            order_ids,
        )
        deliveries = await conn.fetch(
            """SELECT d.delivery_id, d.order_id, d.status, d.code_id,
                      (SELECT count(*) FROM delivery.delivery_attempts a
                        WHERE a.delivery_id = d.delivery_id AND a.outcome = 'succeeded') AS succeeded
                 FROM delivery.deliveries d WHERE d.order_id = ANY($1::uuid[])""",
            order_ids,
        )
        truth = await conn.fetch(
            """SELECT state, fulfilment_status, count(*) AS n FROM "order".orders
                WHERE campaign_id = $1 GROUP BY state, fulfilment_status""",
            campaign_id,
        )
    finally:
        await conn.close()

    # one order per accepted record
    orders_per_ref = Counter(o["external_ref"] for o in orders)
    missing = sorted(refs - set(orders_per_ref))
    doubled_refs = sorted(ref for ref, n in orders_per_ref.items() if n > 1)
    strangers = sorted(set(orders_per_ref) - refs)
    if missing:
        violations.append(f"{len(missing)} accepted records have no order (e.g. {missing[:3]})")
    if doubled_refs:
        violations.append(f"{len(doubled_refs)} records have more than one order (e.g. {doubled_refs[:3]})")
    if strangers:
        violations.append(f"{len(strangers)} orders of no record of this burst (e.g. {strangers[:3]})")

    # codes: at most one per order, none in two orders
    codes_per_order = Counter(c["order_id"] for c in codes)
    held = {c["order_id"]: c["code_id"] for c in codes}
    multi_code = [o for o, n in codes_per_order.items() if n > 1]
    issued_per_order = Counter(i["order_id"] for i in issuances)
    multi_issued = [o for o, n in issued_per_order.items() if n > 1]
    # (these scenarios cancel nothing, so a code released by one order and issued to another counts too)
    orders_per_code: dict[Any, set[Any]] = {}
    for i in issuances:
        orders_per_code.setdefault(i["code_id"], set()).add(i["order_id"])
    shared_codes = [c for c, holders in orders_per_code.items() if len(holders) > 1]
    if multi_code or multi_issued:
        violations.append(f"{len(set(multi_code) | set(multi_issued))} orders hold more than one code")
    if shared_codes:
        violations.append(f"{len(shared_codes)} codes are held by more than one order")
    sent_codes = Counter(d["code_id"] for d in deliveries if d["code_id"] is not None)
    if any(n > 1 for n in sent_codes.values()):
        violations.append("one code was sent for two orders")

    # completed orders: one code, one successful send, the code voucher issued
    completed = [o for o in orders if o["state"] == "completed"]
    by_order = {d["order_id"]: d for d in deliveries}
    without_code = [o["order_id"] for o in completed if o["order_id"] not in held]
    if without_code:
        violations.append(f"{len(without_code)} completed orders hold no code")
    send_counts = Counter(
        int(by_order[o["order_id"]]["succeeded"]) if o["order_id"] in by_order else 0 for o in completed
    )
    unsent = sum(n for k, n in send_counts.items() if k == 0)
    resent = sum(n for k, n in send_counts.items() if k > 1)
    if unsent:
        violations.append(f"{unsent} completed orders have no successful send in the delivery tables")
    if resent:
        violations.append(
            f"{resent} completed orders have more than one successful send in the delivery tables"
        )
    wrong_code = [
        o["order_id"]
        for o in completed
        if o["order_id"] in by_order
        and o["order_id"] in held
        and by_order[o["order_id"]]["code_id"] != held[o["order_id"]]
    ]
    if wrong_code:
        violations.append(f"{len(wrong_code)} orders were sent a code voucher did not issue to them")

    # the sinks: one file per recipient, nothing for anyone else of this campaign
    emails = p.emails_by_recipient(system)
    messages = p.messages_by_recipient(system)
    received = {
        r["external_ref"]: (emails if r["channel"] == "email" else messages)[burst.recipient(r)]
        for r in accepted
    }
    unreceived = sorted(ref for ref, n in received.items() if n == 0)
    twice = sorted(ref for ref, n in received.items() if n > 1)
    if twice:
        violations.append(f"{len(twice)} recipients got more than one message (e.g. {twice[:3]})")
    domain = f"@{campaign_id.lower()}.example.com"
    mine = {r["email"] for r in burst.records}
    foreign = [a for a in emails if a.endswith(domain) and a not in mine]
    if foreign:
        violations.append(f"{len(foreign)} e-mails of this campaign went to no record's address")
    state_of = {o["external_ref"]: o["state"] for o in orders}
    completed_unreceived = [ref for ref in unreceived if state_of.get(ref) == "completed"]
    if completed_unreceived:
        violations.append(
            f"{len(completed_unreceived)} completed orders reached no sink (e.g. {completed_unreceived[:3]})"
        )
    not_sent = [
        o["order_id"]
        for o in completed
        if o["order_id"] in by_order and by_order[o["order_id"]]["status"] != "sent"
    ]
    if not_sent:
        violations.append(f"{len(not_sent)} completed orders whose delivery is not 'sent'")

    # the summary equals the table
    async with httpx.AsyncClient(
        base_url=system.urls["order"], headers=system.headers(), timeout=30
    ) as order:
        summary = await p.summary(order, campaign_id)
    expected_by_state: Counter[str] = Counter()
    expected_by_status: Counter[str] = Counter()
    for row in truth:
        expected_by_state[row["state"]] += row["n"]
        if row["fulfilment_status"]:
            expected_by_status[row["fulfilment_status"]] += row["n"]
    said_state = {k: v for k, v in summary["by_state"].items() if v}
    said_status = {k: v for k, v in summary["by_fulfilment_status"].items() if v}
    if (
        summary["total"] != len(orders)
        or said_state != dict(expected_by_state)
        or said_status != dict(expected_by_status)
    ):
        violations.append(
            f"summary {summary['total']} {said_state} {said_status} != table {len(orders)} "
            f"{dict(expected_by_state)} {dict(expected_by_status)}"
        )

    # nothing lost: every accepted record completed and delivered
    lost = len(missing) + sum(1 for o in orders if o["external_ref"] in refs and o["state"] != "completed")
    lost += len(completed_unreceived)
    if len(completed) != len(refs):
        violations.append(f"{len(refs)} records accepted but {len(completed)} orders completed")
    doubled = (
        len(doubled_refs) + len(set(multi_code) | set(multi_issued)) + len(shared_codes) + resent + len(twice)
    )
    return Outcome(
        scenario=scenario,
        sent=burst.size,
        accepted=len(refs),
        completed=len(completed),
        lost=lost,
        doubled=doubled,
        restart_s=round(restart_s, 1),
        settle_s=round(settle_s, 1),
        violations=violations,
        resent=resent_messages(system, {str(d["delivery_id"]) for d in deliveries}),
    )


# ------------------------------------------------------------------------------------------ re-sends


def _delivery_of(key: str) -> str:
    """The delivery a sink's receipt key names: `<delivery_id>:<round>:<channel>` (idempotency token)
    or `<delivery_id.round.email@domain>` (Message-ID)."""
    return key.strip("<").split(":", 1)[0].split(".", 1)[0]


def resent_messages(system: System, delivery_ids: set[str]) -> int | None:
    """Receipts - distinct messages of these deliveries in both sinks; None when they do not count."""
    if not any((d / RECEIPTS_FILE).exists() for d in (system.mail_dir, system.messages_dir)):
        return None  # the sinks were not started with COUNT_REPEATS_ENV=1
    receipts = receipts_in(system.mail_dir) + receipts_in(system.messages_dir)
    mine = {k: n for k, n in receipts.items() if _delivery_of(k) in delivery_ids}
    return sum(mine.values()) - len(mine)


def delivery_workers(burst: Burst, replicas: int = 1) -> int:
    """Workers that may each have had one message sent but not recorded when delivery was killed:
    per channel workers (the settings' defaults, which the fault suite keeps) x the burst's channels."""
    settings = DeliverySettings()
    channels = {r["channel"] for r in burst.records}
    return replicas * sum(settings.workers(Channel(c)) for c in channels)


# -------------------------------------------------------------------------------------------- report


def table(outcomes: list[Outcome]) -> list[str]:
    header = (
        f"{'scenario':<34} {'sent':>6} {'completed':>9} {'lost':>5} {'doubled':>7} "
        f"{'resent':>6} {'restart s':>9} {'settle s':>8}  ok"
    )
    lines = [header, "-" * len(header)]
    for o in outcomes:
        lines.append(
            f"{o.scenario:<34} {o.sent:>6} {o.completed:>9} {o.lost:>5} {o.doubled:>7} "
            f"{'-' if o.resent is None else o.resent:>6} {o.restart_s:>9.1f} {o.settle_s:>8.1f}"
            f"  {'yes' if o.ok else 'NO'}"
        )
        lines.extend(f"    ! {v}" for v in o.violations)
        lines.extend(f"    - {n}" for n in o.notes)
    return lines


def write_results(outcomes: list[Outcome], path: Path = RESULTS_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": [{**asdict(o), "ok": o.ok} for o in outcomes],
    }
    path.write_text(json.dumps(payload, indent=2))
    return path

"""The SLA monitor job detects warnings and breaches on time, publishes them and escalates the ticket."""

from __future__ import annotations

import asyncpg

from chassis.audit import verify_audit_chain
from chassis.jobs import job_lock_key
from chassis.service import ServiceRuntime
from chassis.testing import wait_until
from contracts.topics import Topics
from services.support import sla_monitor
from services.support.__main__ import build_spec
from services.support.tests.integration.conftest import Support

MEMBER = "member-sla-1"


async def _open(support: Support, **body: object) -> dict:
    return await support.open_ticket(
        MEMBER, {"category": "malfunctioning_code", "description": "code refused at the till", **body}
    )


async def _ticket(support: Support, ticket_id: str) -> dict:
    response = await support.client.get(f"/v1/tickets/{ticket_id}", headers=support.token("admin", "lead"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_breach_is_detected_by_the_job_published_and_the_ticket_escalated(support: Support):
    ticket = await _open(support, priority="high")  # high: first response within 1 h, every hour counts
    ticket_id = ticket["ticket_id"]
    assert ticket["sla"]["first_response"]["due_at"] == "2026-11-23T10:00:00Z"

    support.clock.advance(minutes=49)  # 81.7 % of the hour
    await wait_until(
        lambda: _kinds(support, ticket_id, ["warning"]), timeout=60, what="the SLA warning on the topic"
    )
    warning = (await support.events(Topics.SUPPORT_SLA_BREACHED, ticket_id=ticket_id))[0]["data"]
    assert warning["due_at"] == "2026-11-23T10:00:00Z"  # when the target will be missed
    assert warning["breached_at"] is None
    warned = await _ticket(support, ticket_id)
    assert warned["priority"] == "high"
    assert warned["sla"]["first_response"]["status"] == "warning"

    support.clock.advance(minutes=12)  # one minute past the target
    await wait_until(
        lambda: _kinds(support, ticket_id, ["warning", "breach"]),
        timeout=60,
        what="the SLA breach on the topic",
    )
    breach = (await support.events(Topics.SUPPORT_SLA_BREACHED, ticket_id=ticket_id, kind="breach"))[0][
        "data"
    ]
    assert breach["target"] == "first_response"
    assert breach["breached_at"] == "2026-11-23T10:00:00Z"
    assert breach["priority"] == "urgent"
    assert breach["category"] == "malfunctioning_code"

    escalated = await _ticket(support, ticket_id)
    assert escalated["priority"] == "urgent"
    assert escalated["queue"] == "escalation"
    assert escalated["sla"]["first_response"]["status"] == "breached"
    assert escalated["sla"]["first_response"]["overdue_s"] == 60
    kinds = [entry["kind"] for entry in escalated["timeline"]]
    assert kinds == ["created", "sla_warning", "sla_breached"]
    assert escalated["timeline"][-1]["actor"] == "system:sla-monitor"

    queue = await support.client.get(
        "/v1/tickets",
        params={"queue": "escalation", "open_only": "true"},
        headers=support.token("admin", "lead"),
    )
    assert [t["ticket_id"] for t in queue.json()["items"]] == [ticket_id]

    audit = await support.fetch("SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY seq", ticket_id)
    assert [r["action"] for r in audit] == [
        "ticket.opened",
        "ticket.sla_warning",
        "ticket.sla_breached_escalated",
    ]
    conn = await asyncpg.connect(support.db.dsn, server_settings={"search_path": support.db.schema})
    try:
        assert (await verify_audit_chain(conn)).ok
    finally:
        await conn.close()

    metrics = (await support.client.get("/metrics")).text
    assert 'orchard_support_sla_alerts_total{kind="breach",target="first_response"}' in metrics

    # Another run (or a second leader) finds nothing new to raise.
    assert await sla_monitor.check_sla(support.pool, support.ctx) == 0
    assert len(await support.events(Topics.SUPPORT_SLA_BREACHED, ticket_id=ticket_id)) == 2


async def _kinds(support: Support, ticket_id: str, wanted: list[str]) -> bool:
    events = await support.events(Topics.SUPPORT_SLA_BREACHED, ticket_id=ticket_id)
    return [e["data"]["kind"] for e in events] == wanted


async def test_the_clock_stands_still_while_the_ticket_waits_on_the_customer(support: Support):
    ticket = await _open(support, priority="high")  # resolution within 8 h
    ticket_id = ticket["ticket_id"]
    agent = support.token("support_agent", "alice")

    support.clock.advance(minutes=30)
    moved = await support.client.post(
        f"/v1/tickets/{ticket_id}/transitions",
        json={"to": "waiting_on_customer", "note": "photo?"},
        headers=agent,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["sla"]["first_response"]["status"] == "met"

    support.clock.advance(hours=20)
    assert await sla_monitor.check_sla(support.pool, support.ctx) == 0
    waiting = await _ticket(support, ticket_id)
    assert waiting["sla"]["resolution"]["paused"] is True
    assert waiting["sla"]["resolution"]["seconds_left"] == 7.5 * 3600

    reply = await support.client.post(
        f"/v1/tickets/{ticket_id}/comments",
        json={"body": "here it is"},
        headers=support.token("member", MEMBER),
    )
    assert reply.status_code == 201
    assert reply.json()["state"] == "in_progress"

    support.clock.advance(hours=7, minutes=31)
    await _alerts_become(support, ticket_id, [("resolution", "breach")])
    breached = await _ticket(support, ticket_id)
    assert breached["sla"]["resolution"]["status"] == "breached"
    assert breached["sla"]["resolution"]["overdue_s"] == 60


async def _alerts_become(support: Support, ticket_id: str, expected: list[tuple[str, str]]) -> None:
    """Run the monitor (the service's own job may be running it too) until the ticket's alerts are these."""

    async def raised() -> bool:
        await sla_monitor.check_sla(support.pool, support.ctx)
        rows = await support.fetch(
            "SELECT target, kind FROM sla_alerts WHERE ticket_id = $1 ORDER BY raised_at, kind", ticket_id
        )
        return [(r["target"], r["kind"]) for r in rows] == expected

    await wait_until(raised, timeout=30, what=f"alerts {expected}")


async def test_two_replicas_raise_each_alert_once(support: Support):
    replica_spec, replica_ctx = build_spec(support.settings, support.clock)
    replica = ServiceRuntime(support.settings, replica_spec)
    await replica.start()
    try:
        ticket_id = (await _open(support, priority="medium"))["ticket_id"]  # 4 business hours
        support.clock.advance(hours=5)  # straight past the first response: a breach, no warning first

        await wait_until(lambda: _kinds(support, ticket_id, ["breach"]), timeout=60, what="the breach")
        assert await sla_monitor.check_sla(support.pool, support.ctx) == 0
        assert await sla_monitor.check_sla(replica.pool, replica_ctx) == 0
        assert replica.jobs is not None
        leaders = await support.fetch(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted",
            job_lock_key(support.db.schema, "support-sla-monitor") & 0xFFFFFFFF,
        )
        assert leaders[0]["n"] == 1
    finally:
        await replica.stop()
    assert await _kinds(support, ticket_id, ["breach"])
    ticket = await _ticket(support, ticket_id)
    assert ticket["priority"] == "high"  # escalated once, not twice
    assert [e["kind"] for e in ticket["timeline"]] == ["created", "sla_breached"]


async def test_the_monitor_counts_only_business_hours_over_a_weekend(support: Support):
    support.clock.advance(days=4, hours=7)  # Friday 16:00; medium: first response within 4 business hours
    ticket_id = (await _open(support, priority="medium"))["ticket_id"]

    support.clock.advance(days=2, hours=16)  # Monday 08:00: one working hour used, the weekend does not count
    assert await sla_monitor.check_sla(support.pool, support.ctx) == 0
    support.clock.advance(hours=3, minutes=25)  # Monday 11:25: 3 h 25 min used, past 80 %
    await _alerts_become(support, ticket_id, [("first_response", "warning")])
    support.clock.advance(minutes=36)  # Monday 12:01: one minute past the target
    await _alerts_become(support, ticket_id, [("first_response", "warning"), ("first_response", "breach")])

    due = await support.fetch("SELECT DISTINCT due_at FROM sla_alerts WHERE ticket_id = $1", ticket_id)
    assert [r["due_at"].isoformat() for r in due] == ["2026-11-30T12:00:00+00:00"]
    ticket = await _ticket(support, ticket_id)
    assert ticket["priority"] == "high"
    assert ticket["sla"]["first_response"]["overdue_s"] == 60

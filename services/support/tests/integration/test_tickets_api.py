"""Tickets over HTTP: who may see and move what, problems for refused moves, timelines, the report."""

from __future__ import annotations

from services.support import sla_monitor
from services.support import tickets as tickets_module
from services.support.tests.integration.conftest import Support


async def _open(support: Support, member: str, **body: object) -> dict:
    return await support.open_ticket(
        member, {"category": "redemption_failure", "description": "partner refused my code", **body}
    )


async def test_members_see_only_their_own_tickets(support: Support):
    mine = await _open(support, "ann")
    await _open(support, "ben")

    listed = await support.client.get("/v1/tickets", headers=support.token("member", "ann"))
    assert [t["ticket_id"] for t in listed.json()["items"]] == [mine["ticket_id"]]
    other = await support.client.get(
        f"/v1/tickets/{mine['ticket_id']}", headers=support.token("member", "ben")
    )
    assert other.status_code == 404
    assert other.json()["code"] == "ticket_not_found"
    forged = await support.client.post(
        "/v1/tickets",
        json={"category": "other", "description": "x", "member_id": "ben"},
        headers=support.token("member", "ann"),
    )
    assert forged.status_code == 403


async def test_an_agent_opens_a_ticket_for_a_member_and_must_name_them(support: Support):
    agent = support.token("support_agent", "alice")
    nameless = await support.client.post(
        "/v1/tickets", json={"category": "other", "description": "phone call"}, headers=agent
    )
    assert nameless.status_code == 422
    assert nameless.json()["errors"][0]["field"] == "body.member_id"
    opened = await support.client.post(
        "/v1/tickets",
        json={"category": "other", "description": "phone call", "member_id": "cara", "assignee": "alice"},
        headers=agent,
    )
    assert opened.status_code == 201
    assert opened.json()["opened_by"] == "support_agent:alice"
    assert opened.json()["origin"] == "agent"
    seen = await support.client.get("/v1/tickets", headers=support.token("member", "cara"))
    assert len(seen.json()["items"]) == 1


async def test_an_invalid_move_is_a_409_problem_and_changes_nothing(support: Support):
    ticket = await _open(support, "dan")
    agent = support.token("support_agent", "alice")
    url = f"/v1/tickets/{ticket['ticket_id']}/transitions"

    refused = await support.client.post(url, json={"to": "closed"}, headers=agent)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "invalid_transition"
    unknown_state = await support.client.post(url, json={"to": "archived"}, headers=agent)
    assert unknown_state.status_code == 422
    assert unknown_state.json()["errors"][0]["field"] == "body.to"
    member_move = await support.client.post(
        url, json={"to": "in_progress"}, headers=support.token("member", "dan")
    )
    assert member_move.status_code == 403

    after = await support.client.get(f"/v1/tickets/{ticket['ticket_id']}", headers=agent)
    assert after.json()["state"] == "open"
    assert [e["kind"] for e in after.json()["timeline"]] == ["created"]


async def test_the_full_lifecycle_with_reopen_is_on_the_timeline_with_its_actors(support: Support):
    ticket = await _open(support, "eve", priority="urgent")
    ticket_id = ticket["ticket_id"]
    agent = support.token("support_agent", "alice")
    member = support.token("member", "eve")

    async def move(to: str, headers: dict[str, str]) -> dict:
        response = await support.client.post(
            f"/v1/tickets/{ticket_id}/transitions", json={"to": to}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    support.clock.advance(minutes=5)
    await support.client.post(
        f"/v1/tickets/{ticket_id}/comments",
        json={"body": "checking with partner", "internal": True},
        headers=agent,
    )
    assert (await move("in_progress", agent))["sla"]["first_response"]["status"] == "met"
    await move("resolved", agent)
    reopened = await move("open", member)
    assert reopened["resolved_at"] is None
    await move("resolved", agent)
    closed = await move("closed", member)
    assert closed["sla"]["resolution"]["status"] == "met"

    note = await support.client.post(
        f"/v1/tickets/{ticket_id}/comments", json={"body": "psst", "internal": True}, headers=member
    )
    assert note.status_code == 403

    staff_view = await support.client.get(f"/v1/tickets/{ticket_id}", headers=agent)
    member_view = await support.client.get(f"/v1/tickets/{ticket_id}", headers=member)
    staff_timeline = [(e["kind"], e["actor"], e["to_state"]) for e in staff_view.json()["timeline"]]
    assert staff_timeline == [
        ("created", "member:eve", None),
        ("comment", "support_agent:alice", None),
        ("state_changed", "support_agent:alice", "in_progress"),
        ("state_changed", "support_agent:alice", "resolved"),
        ("reopened", "member:eve", "open"),
        ("state_changed", "support_agent:alice", "resolved"),
        ("state_changed", "member:eve", "closed"),
    ]
    assert "comment" not in [e["kind"] for e in member_view.json()["timeline"]]
    audit = await support.fetch("SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY seq", ticket_id)
    assert [r["action"] for r in audit].count("ticket.reopened") == 1


async def test_business_hours_policy_from_the_api_sets_the_due_time(support: Support):
    admin = support.token("admin", "root")
    calendar = await support.client.put(
        "/v1/sla/calendars/emea",
        json={
            "timezone": "Europe/Berlin",
            "working_days": [1, 2, 3, 4, 5],
            "day_start": "09:00",
            "day_end": "17:00",
            "holidays": ["2026-11-24"],
        },
        headers=admin,
    )
    assert calendar.status_code == 200, calendar.text
    policy = await support.client.put(
        "/v1/sla/policies",
        json={
            "priority": "low",
            "category": "other",
            "first_response_s": 4 * 3600,
            "resolution_s": 16 * 3600,
            "calendar_id": "emea",
        },
        headers=admin,
    )
    assert policy.status_code == 200, policy.text
    bad = await support.client.put(
        "/v1/sla/policies",
        json={"priority": "low", "first_response_s": 60, "resolution_s": 60, "calendar_id": "nowhere"},
        headers=admin,
    )
    assert bad.status_code == 422
    agent_put = await support.client.put(
        "/v1/sla/calendars/x", json={}, headers=support.token("support_agent", "alice")
    )
    assert agent_put.status_code == 403

    support.clock.advance(hours=6)  # Monday 15:00 UTC = 16:00 in Berlin: one working hour left today
    ticket = await _open(support, "fay", priority="low", category="other")
    # 1 h Monday, Tuesday is a holiday, 3 h Wednesday from 09:00 Berlin (08:00 UTC).
    assert ticket["sla"]["first_response"]["due_at"] == "2026-11-25T11:00:00Z"
    assert ticket["sla"]["policy"]["calendar_id"] == "emea"

    removal = {"priority": "low", "category": "other"}
    assert (await support.client.delete("/v1/sla/policies", params=removal, headers=admin)).status_code == 204
    assert (await support.client.delete("/v1/sla/policies", params=removal, headers=admin)).status_code == 404
    general = await support.client.delete("/v1/sla/policies", params={"priority": "low"}, headers=admin)
    assert general.status_code == 422
    after = await _open(support, "fay", priority="low", category="other")
    assert after["sla"]["policy"]["calendar_id"] == "business"


async def test_the_report_gives_the_share_meeting_each_target(support: Support):
    agent = support.token("support_agent", "alice")
    fast = await _open(support, "gus", priority="high")
    slow = await _open(support, "hal", priority="high")
    support.clock.advance(minutes=30)
    await support.client.post(
        f"/v1/tickets/{fast['ticket_id']}/transitions", json={"to": "in_progress"}, headers=agent
    )
    support.clock.advance(hours=2)
    await sla_monitor.check_sla(support.pool, support.ctx)  # the slow one breaches its first response
    await support.client.post(
        f"/v1/tickets/{slow['ticket_id']}/transitions", json={"to": "resolved"}, headers=agent
    )

    report = await support.client.get("/v1/sla/report", params={"from": "2026-11-23"}, headers=agent)
    assert report.status_code == 200, report.text
    body = report.json()
    (row,) = [r for r in body["rows"] if r["priority"] == "high" and r["category"] == "redemption_failure"]
    assert row["week"] == "2026-11-23"
    assert row["tickets"] == 2
    assert row["first_response"] == {"met": 1, "missed": 1, "share_met": 0.5}
    assert row["resolution"] == {"met": 1, "missed": 0, "share_met": 1.0}
    assert body["by_priority"][0]["priority"] == "high"
    member = await support.client.get("/v1/sla/report", headers=support.token("member", "gus"))
    assert member.status_code == 403


async def test_team_leads_list_open_tickets_most_urgent_first_page_by_page(support: Support):
    agent = support.token("support_agent", "alice")
    low = await _open(support, "ivy", priority="low")
    high = await _open(support, "ivy", priority="high")
    paused = await _open(support, "ivy", priority="urgent")
    urgent = await _open(support, "ivy", priority="urgent")
    await support.client.post(
        f"/v1/tickets/{paused['ticket_id']}/transitions", json={"to": "waiting_on_customer"}, headers=agent
    )

    params = {"member_id": "ivy", "open_only": "true", "sort": "sla_due", "limit": "2"}
    first = await support.client.get("/v1/tickets", params=params, headers=agent)
    assert first.status_code == 200, first.text
    second = await support.client.get(
        "/v1/tickets", params={**params, "cursor": first.json()["next_cursor"]}, headers=agent
    )

    order = [t["ticket_id"] for t in first.json()["items"] + second.json()["items"]]
    assert order == [urgent["ticket_id"], high["ticket_id"], low["ticket_id"], paused["ticket_id"]]
    assert second.json()["next_cursor"] is None
    assert first.json()["items"][0]["sla"]["first_response"]["seconds_left"] == 1800
    bad = await support.client.get("/v1/tickets", params={"cursor": "nonsense"}, headers=agent)
    assert bad.status_code == 422


async def test_staff_assign_and_reprioritise_and_the_new_priority_brings_its_targets(support: Support):
    ticket = await _open(support, "jon", priority="low")
    ticket_id = ticket["ticket_id"]
    lead = support.token("admin", "lead")

    updated = await support.client.patch(
        f"/v1/tickets/{ticket_id}",
        json={"assignee": "support_agent:alice", "priority": "urgent"},
        headers=lead,
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["assignee"] == "support_agent:alice"
    assert body["sla"]["policy"] == {
        "priority": "urgent",
        "first_response_s": 1800,
        "resolution_s": 14400,
        "calendar_id": None,
    }
    mine = await support.client.get(
        "/v1/tickets",
        params={"assignee": "support_agent:alice"},
        headers=support.token("support_agent", "alice"),
    )
    assert [t["ticket_id"] for t in mine.json()["items"]] == [ticket_id]
    member = await support.client.patch(
        f"/v1/tickets/{ticket_id}", json={"priority": "urgent"}, headers=support.token("member", "jon")
    )
    assert member.status_code == 403
    unknown_field = await support.client.patch(
        f"/v1/tickets/{ticket_id}", json={"state": "closed"}, headers=lead
    )
    assert unknown_field.status_code == 422
    timeline = (await support.client.get(f"/v1/tickets/{ticket_id}", headers=lead)).json()["timeline"]
    assert timeline[-1]["kind"] == "updated"
    assert timeline[-1]["details"] == {
        "from": {"assignee": None, "priority": "low"},
        "to": {"assignee": "support_agent:alice", "priority": "urgent"},
    }


async def test_a_clashing_ticket_id_is_drawn_again(support: Support, monkeypatch):
    ids = iter(["TK-SAMESAME00", "TK-SAMESAME00", "TK-OTHERONE0"])
    monkeypatch.setattr(tickets_module, "new_ticket_id", lambda: next(ids))

    first = await _open(support, "kim")
    second = await _open(support, "kim")

    assert (first["ticket_id"], second["ticket_id"]) == ("TK-SAMESAME00", "TK-OTHERONE0")


async def test_a_calendar_time_with_an_offset_or_a_nul_byte_is_refused_with_422_and_nothing_is_stored(
    support: Support,
):
    admin = support.token("admin", "root")
    valid = {"timezone": "Europe/Berlin", "working_days": [1, 2, 3], "day_start": "09:00", "day_end": "17:00"}
    cases = [
        ("fuzz", {"day_start": "09:00:00+02:00"}, "body.day_start"),
        ("fuzz", {"day_end": "17:00Z"}, "body.day_end"),
        ("fuzz", {"timezone": "Europe/Berlin\x00"}, "body.timezone"),
        ("fu%00zz", {}, "path.calendar_id"),
    ]
    for calendar_id, override, field in cases:
        response = await support.client.put(
            f"/v1/sla/calendars/{calendar_id}", json={**valid, **override}, headers=admin
        )
        assert response.status_code == 422, (override, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in response.json()["errors"]] == [field]
    stored = await support.fetch("SELECT calendar_id FROM business_calendars WHERE calendar_id LIKE 'fu%'")
    assert stored == []

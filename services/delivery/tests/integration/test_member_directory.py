"""The member directory against the real broker and database: HR events, CSV imports, corrections,
the audit of contact changes, and a one-time code reaching a member who never had a voucher."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chassis.testing import produce, read_topic, wait_until
from contracts.delivery import DeliveryMessageRequested
from contracts.members import MemberUpserted
from contracts.topics import Topics
from contracts.values import Channel

from .conftest import DeliveryService, request_for


def _member_id() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


async def _listed(service: DeliveryService, member_id: str, **expected: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {}

    async def arrived() -> bool:
        nonlocal entry
        row = await service.pool.fetchrow("SELECT * FROM member_contacts WHERE member_id = $1", member_id)
        entry = dict(row) if row is not None else {}
        return bool(entry.get("listed")) and all(entry.get(k) == v for k, v in expected.items())

    await wait_until(arrived, timeout=30, what=f"{member_id} in the directory with {sorted(expected)}")
    return entry


async def _audit(service: DeliveryService, member_id: str) -> list[dict[str, Any]]:
    rows = await service.pool.fetch(
        "SELECT actor, action, details FROM audit_log WHERE subject_type = 'member' AND subject_id = $1"
        " ORDER BY seq",
        member_id,
    )
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]


def _one_time_code(member_id: str, channel: Channel = Channel.EMAIL) -> DeliveryMessageRequested:
    return DeliveryMessageRequested(
        message_id=uuid.uuid4(),
        member_id=member_id,
        channel=channel,
        template="offer_one_time_code",
        params={"code": "493817", "offer_title": "Coffee for two", "expires_in_minutes": "5"},
    )


async def test_a_member_known_only_from_hris_receives_a_one_time_code(delivery_service):
    service = await delivery_service()
    member_id = _member_id()
    await service.publish(MemberUpserted(member_id=member_id, name="Noor", email="noor@example.com"))
    await _listed(service, member_id, email="noor@example.com")

    await service.publish(_one_time_code(member_id))

    async def mailed() -> bool:
        return any("noor@example.com" in str(m["To"]) for m in service.smtp.messages())

    await wait_until(mailed, timeout=30, what="the one-time code in the SMTP sink")
    (message,) = [m for m in service.smtp.messages() if "noor@example.com" in str(m["To"])]
    assert "493817" in message.get_body(preferencelist=("plain",)).get_content()


async def test_a_one_time_code_goes_by_the_preferred_channel_when_the_asked_one_has_no_address(
    delivery_service,
):
    service = await delivery_service()
    member_id = _member_id()
    await service.publish(
        MemberUpserted(member_id=member_id, phone="+447700900321", preferred_channel=Channel.SMS)
    )
    await _listed(service, member_id, phone="+447700900321")

    await service.publish(_one_time_code(member_id, Channel.EMAIL))

    async def texted() -> bool:
        return any(m.get("to") == "+447700900321" for m in service.provider.messages())

    await wait_until(texted, timeout=30, what="the one-time code by SMS")
    assert not [m for m in service.smtp.messages() if member_id in str(m)]


async def test_an_invalid_member_event_is_dead_lettered_and_changes_nothing(delivery_service):
    service = await delivery_service()
    member_id = _member_id()
    bad = {
        "event_id": str(uuid.uuid4()),
        "event_type": Topics.MEMBER_UPSERTED.value,
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "producer": "hris",
        "correlation_id": "c-1",
        "data": {"member_id": member_id, "email": "not-an-address"},
    }
    await produce(service.bootstrap, Topics.MEMBER_UPSERTED, [(member_id.encode(), json.dumps(bad).encode())])

    async def dead_lettered() -> bool:
        records = await read_topic(service.bootstrap, Topics.MEMBER_UPSERTED.dlq)
        return any(json.loads(r.value)["event_id"] == bad["event_id"] for r in records)

    await wait_until(dead_lettered, timeout=60, what="the invalid member event in the DLQ")
    row = await service.pool.fetchrow("SELECT 1 FROM member_contacts WHERE member_id = $1", member_id)
    assert row is None


async def test_a_contact_change_is_audited_with_its_fields_and_author_but_not_its_values(delivery_service):
    service = await delivery_service()
    member_id = _member_id()
    await service.publish(MemberUpserted(member_id=member_id, name="Ines", email="ines@example.com"))
    await _listed(service, member_id, email="ines@example.com")

    answer = await service.http.put(
        f"/v1/members/{member_id}",
        json={"email": "ines.new@example.com", "opted_out": ["points_credited"]},
        headers=service.token("ops", "olga"),
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] == ["email", "opted_out"]
    entries = await _audit(service, member_id)
    assert [(e["actor"], e["details"]["fields"], e["details"]["source"]) for e in entries] == [
        ("hris:test", ["name", "email"], "hris"),
        ("ops:olga", ["email", "opted_out"], "correction"),
    ]
    assert "example.com" not in json.dumps(entries)
    verified = await service.http.get("/v1/audit/verify", headers=service.token("auditor"))
    assert verified.json()["ok"] is True


async def test_an_older_hris_change_than_the_one_applied_changes_nothing(delivery_service):
    service = await delivery_service()
    member_id = _member_id()
    now = datetime.now(UTC)
    await service.publish(MemberUpserted(member_id=member_id, email="new@example.com", changed_at=now))
    await _listed(service, member_id, email="new@example.com")
    await service.publish(
        MemberUpserted(member_id=member_id, email="old@example.com", changed_at=now - timedelta(days=1))
    )
    await service.publish(MemberUpserted(member_id=member_id, name="Later", changed_at=now))

    entry = await _listed(service, member_id, name="Later")
    assert entry["email"] == "new@example.com"


async def test_an_orders_contacts_do_not_overwrite_a_listed_member(delivery_service):
    service = await delivery_service()
    member_id = _member_id()
    await service.publish(MemberUpserted(member_id=member_id, email="hr@example.com"))
    await _listed(service, member_id, email="hr@example.com")
    order_id = uuid.uuid4()
    request = request_for(order_id, email="order@example.com").model_copy(update={"member_id": member_id})

    await service.publish(request)
    await service.publish(MemberUpserted(member_id=member_id, name="After"))

    entry = await _listed(service, member_id, name="After")
    assert entry["email"] == "hr@example.com"


CSV = (
    "member_id,name,email,phone,locale,preferred_channel,opted_out,employment_status\r\n"
    "{a},Ana,ana@example.com,+447700900111,pt-BR,sms,points_credited;ticket_updated,active\r\n"
    "{b},Ben,not-an-email,+447700900222,en,,,\r\n"
    "{c},Cy,cy@example.com,,en,pigeon,,retired\r\n"
    "{d},Di,di@example.com,,,,,\r\n"
)


async def test_a_csv_import_upserts_members_and_reports_errors_by_row_and_field(delivery_service):
    service = await delivery_service()
    a, b, c, d = (_member_id() for _ in range(4))
    body = CSV.format(a=a, b=b, c=c, d=d)

    answer = await service.http.post(
        "/v1/members/import",
        content=body.encode(),
        headers={**service.token("hris", "workday"), "Content-Type": "text/csv"},
    )

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["rows"], report["valid"], report["rejected"], report["changed"]) == (4, 2, 2, 2)
    assert {(e["row"], e["field"]) for e in report["errors"]} == {
        (2, "email"),
        (3, "preferred_channel"),
        (3, "employment_status"),
    }
    ana = await _listed(service, a, locale="pt-BR")
    assert ana["preferred_channel"] == "sms"
    assert sorted(ana["opted_out"]) == ["points_credited", "ticket_updated"]
    assert (await _listed(service, d))["email"] == "di@example.com"
    missing = await service.pool.fetch(
        "SELECT member_id FROM member_contacts WHERE member_id = ANY($1::text[])", [b, c]
    )
    assert missing == []
    assert (await _audit(service, a))[0]["actor"] == "hris:workday"


async def test_a_csv_import_as_a_multipart_file_in_a_dry_run_changes_nothing(delivery_service):
    service = await delivery_service()
    a, b, c, d = (_member_id() for _ in range(4))
    answer = await service.http.post(
        "/v1/members/import?dry_run=true",
        files={"file": ("members.csv", CSV.format(a=a, b=b, c=c, d=d).encode(), "text/csv")},
        headers=service.token("admin"),
    )

    assert answer.status_code == 200, answer.text
    assert (answer.json()["valid"], answer.json()["changed"]) == (2, 0)
    assert await service.pool.fetchval("SELECT count(*) FROM member_contacts WHERE member_id = $1", a) == 0


async def test_an_unreadable_import_is_refused_naming_the_file_and_changes_nothing(delivery_service):
    service = await delivery_service()
    member_id = _member_id()
    body = f"member_id,nickname\r\n{member_id},x\r\n".encode()

    answer = await service.http.post(
        "/v1/members/import", content=body, headers={**service.token("ops"), "Content-Type": "text/csv"}
    )

    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "file"
    assert answer.json()["errors"][0]["code"] == "unknown_column"


async def test_members_read_and_set_only_their_own_preferences(delivery_service):
    service = await delivery_service()
    member_id = _member_id()
    await service.publish(MemberUpserted(member_id=member_id, email="me@example.com"))
    await _listed(service, member_id)
    own = service.token("member", member_id)

    mine = await service.http.get(f"/v1/members/{member_id}", headers=own)
    changed = await service.http.put(
        f"/v1/members/{member_id}/preferences", json={"opted_out": ["order_on_hold"]}, headers=own
    )
    other = await service.http.get(f"/v1/members/{_member_id()}", headers=own)
    sneaky = await service.http.put(f"/v1/members/{member_id}", json={"email": "x@example.com"}, headers=own)
    bad = await service.http.put(
        f"/v1/members/{member_id}/preferences", json={"opted_out": ["spam"]}, headers=own
    )

    assert mine.status_code == 200
    assert mine.json()["email"] == "me@example.com"
    assert changed.status_code == 200
    assert changed.json()["opted_out"] == ["order_on_hold"]
    assert (other.status_code, sneaky.status_code) == (403, 403)
    assert bad.status_code == 422
    assert "opted_out" in bad.text
    masked = await service.http.get(f"/v1/members/{member_id}", headers=service.token("support_agent"))
    assert masked.json()["email"] != "me@example.com"

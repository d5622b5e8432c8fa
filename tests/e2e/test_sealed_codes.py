"""Sealed codes through the whole running system (DESIGN.md §5 "Sealed codes"): after a burst of orders
every recipient gets its own order's code, and no clear code is left on any topic, in any service's log
or in any outbox row; and a recovered delivered code is retired while the member gets a fresh one.

The clear codes are learnt the way people learn them: by the audited reveal and from the mail sink."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.utils import getaddresses

import asyncpg
import httpx
import pytest

from chassis.testing import read_topic, wait_until
from contracts.registry import kafka_topics
from tests import pipeline as p
from tests.system import SERVICES, System, running_system

ORDERS = 60


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    # The test reveals every code of its burst: more than one actor's default share per minute.
    with running_system(env={"ORCHARD_VOUCHER_REVEALS_PER_MINUTE": "1000"}) as running:
        yield running


def _mailed_codes(system: System, campaign_id: str) -> dict[str, str]:
    """Recipient address → the text of the one mail each recipient of the campaign got."""
    mailed: dict[str, str] = {}
    for path in system.mail_dir.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        for _, address in getaddresses(message.get_all("To", [])):
            if address.lower().endswith(f"@{campaign_id}.example.com"):
                assert address.lower() not in mailed, f"{address} got two mails"
                body = message.get_body(("plain",))  # type: ignore[attr-defined]
                assert body is not None
                mailed[address.lower()] = str(body.get_content())
    return mailed


async def _outbox_payloads(system: System) -> list[tuple[str, str, bytes]]:
    conn = await asyncpg.connect(system.admin_dsn)
    try:
        schemas = [
            r["table_schema"]
            for r in await conn.fetch(
                "SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox'"
            )
        ]
        rows: list[tuple[str, str, bytes]] = []
        for schema in schemas:
            rows += [
                (schema, r["topic"], bytes(r["payload"]))
                for r in await conn.fetch(f'SELECT topic, payload FROM "{schema}".outbox')
            ]
        return rows
    finally:
        await conn.close()


async def test_after_a_burst_each_recipient_gets_its_code_and_no_clear_code_is_left_anywhere(
    system: System,
) -> None:
    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, "sealed", codes=ORDERS + 5)
        records = [p.record(campaign_id, f"sealed-{p.RUN}-{n:03d}", n) for n in range(ORDERS)]
        uploaded = await order.post(
            "/v1/ipa/batches", params={"mode": "accept_valid"}, json={"records": records}
        )
        assert uploaded.status_code == 202, uploaded.text

        async def all_completed() -> bool:
            return (await p.summary(order, campaign_id))["by_state"].get("completed", 0) == ORDERS

        await wait_until(all_completed, timeout=240, interval=1.0, what=f"{ORDERS} completed orders")
        recipients = {o["order_id"]: o for o in await p.orders(order, campaign_id)}

        issued = await p.issued(system, campaign_id)
        assert len(issued) == ORDERS
        assert all(e["schema_version"] == 2 and "code" not in e["data"] for e in issued)

        async def reveal(code_id: str) -> str:
            answer = await voucher.post(f"/v1/codes/{code_id}/reveal", json={"reason": "e2e sealed check"})
            assert answer.status_code == 200, answer.text
            code: str = answer.json()["code"]
            return code

        clear = dict(
            zip(
                [e["data"]["order_id"] for e in issued],
                await asyncio.gather(*(reveal(e["data"]["code_id"]) for e in issued)),
                strict=True,
            )
        )

    # Delivery opened each sealed code and sent it to that order's own recipient.
    mailed = _mailed_codes(system, campaign_id)
    by_ref = {r["external_ref"]: r["email"].lower() for r in records}
    assert len(mailed) == ORDERS
    for order_id, code in clear.items():
        text = mailed[by_ref[recipients[order_id]["external_ref"]]]
        assert code in text, f"order {order_id} was not sent its own code"
        assert [c for c in clear.values() if c in text] == [code], f"order {order_id} got another's code"

    secrets = {code.encode() for code in clear.values()}
    assert len(secrets) == ORDERS

    # No topic holds one: every topic and dead-letter topic, read whole.
    bootstrap = system.config.bootstrap_servers
    for topic in kafka_topics():
        for record in await read_topic(bootstrap, topic.name, timeout=20):
            value = bytes(record.value or b"")
            assert not [s for s in secrets if s in value], f"a clear code on {topic.name}"

    # No outbox row left after publishing holds one, nor any sensitive payload at all.
    async def all_published() -> bool:
        rows = await _outbox_payloads(system)
        return all(not payload for _, topic, payload in rows if topic == "voucher.issued")

    await wait_until(all_published, timeout=30, what="every voucher.issued outbox row to be emptied")
    for schema, topic, payload in await _outbox_payloads(system):
        assert not [s for s in secrets if s in payload], f"a clear code in {schema}.outbox ({topic})"

    # No service's log line holds one (the sinks are the recipients: theirs are not the services' logs).
    logs = [path for path in system.config.log_dir.glob("*.log") if path.stem.split("-")[0] in SERVICES]
    assert {path.stem for path in logs} >= set(SERVICES)
    for path in logs:
        text = path.read_bytes()
        assert not [s for s in secrets if s in text], f"a clear code in {path.name}"


def _mails_to(system: System, address: str) -> list[str]:
    """The plain-text bodies of every mail the sink got for `address`, oldest first."""
    found: list[tuple[float, str]] = []
    for path in system.mail_dir.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if address in [a.lower() for _, a in getaddresses(message.get_all("To", []))]:
            body = message.get_body(("plain",))  # type: ignore[attr-defined]
            assert body is not None
            found.append((path.stat().st_mtime, str(body.get_content())))
    return [text for _, text in sorted(found)]


async def test_a_recovered_delivered_code_is_void_and_the_member_gets_a_fresh_one_that_a_resend_repeats(
    system: System,
) -> None:
    """DESIGN.md §5 "Recovery and refusals": the code a member already has is retired, the order's fresh
    code reaches the member, and a resend sends the fresh code, never the retired one."""
    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, "recovery", codes=3)
        record = p.record(campaign_id, f"recovery-{p.RUN}-001", 1)
        placed = await p.place(order, record)
        order_id = placed["order_id"]

        async def completed() -> bool:
            return (await p.order(order, order_id))["state"] == "completed"

        await wait_until(completed, timeout=120, interval=0.5, what="the order to complete")
        [first] = await p.issued(system, campaign_id)
        old_code_id = first["data"]["code_id"]

        async def reveal(code_id: str) -> str:
            answer = await voucher.post(f"/v1/codes/{code_id}/reveal", json={"reason": "e2e recovery"})
            assert answer.status_code == 200, answer.text
            return str(answer.json()["code"])

        old_code = await reveal(old_code_id)
        recovered = await voucher.post(
            "/v1/codes/recover", json={"code_ids": [old_code_id], "reason": "member reports it stolen"}
        )
        assert recovered.status_code == 200, recovered.text
        assert recovered.json()["replaced"] == [old_code_id]

        address = record["email"].lower()

        async def fresh_mailed() -> bool:
            return len(_mails_to(system, address)) == 2

        await wait_until(fresh_mailed, timeout=120, interval=0.5, what="the fresh code to be mailed")
        issued = await p.issued(system, campaign_id)
        assert [e["data"]["order_id"] for e in issued] == [order_id, order_id]
        fresh_code = await reveal(issued[1]["data"]["code_id"])
        assert fresh_code != old_code
        first_mail, second_mail = _mails_to(system, address)
        assert old_code in first_mail
        assert fresh_code in second_mail
        assert old_code not in second_mail
        status = await voucher.get(f"/v1/codes/{old_code_id}")
        assert status.json()["status"] == "void"

        async with httpx.AsyncClient(
            base_url=system.urls["delivery"], headers=system.headers(), timeout=30
        ) as delivery:
            held = (await delivery.get(f"/v1/orders/{order_id}/delivery")).json()
            resent = await delivery.post(f"/v1/deliveries/{held['delivery_id']}/resend")
            assert resent.status_code in (200, 202), resent.text

        async def resent_mailed() -> bool:
            return len(_mails_to(system, address)) == 3

        await wait_until(resent_mailed, timeout=60, interval=0.5, what="the resend to be mailed")
        third_mail = _mails_to(system, address)[2]
        assert fresh_code in third_mail
        assert old_code not in third_mail

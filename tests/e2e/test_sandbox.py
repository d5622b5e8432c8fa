"""The UAT sandbox path through the whole running system, by its public contract only: a test order
placed next to a real one in the same campaign is issued a test code, delivered once to the sink marked
as a test, completes, is listed apart and kept out of the summary's figures, and its code redeems in
test mode only; the real order gets a real code."""

from __future__ import annotations

import email.policy
from email import message_from_bytes
from typing import Any

import httpx

from chassis.testing import wait_until
from tests import pipeline as p
from tests.pipeline import RUN
from tests.system import System

PARTNER = f"sandbox-partner-{RUN}"


async def _completed(order: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    latest: dict[str, Any] = {}

    async def done() -> bool:
        latest.update(await p.order(order, order_id))
        return latest["state"] == "completed"

    await wait_until(done, timeout=120, interval=0.5, what=f"order {order_id} completed")
    return latest


async def _code_of(system: System, campaign_id: str, order_id: str) -> str:
    issued = [e for e in await p.issued(system, campaign_id) if e["data"]["order_id"] == order_id]
    assert len(issued) == 1, issued
    return str(issued[0]["data"]["code_id"])


def _subjects_to(system: System, address: str) -> list[str]:
    subjects = []
    for path in system.mail_dir.glob("*.eml"):
        message = message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address in str(message["To"]).lower():
            subjects.append(str(message["Subject"]))
    return subjects


async def test_a_test_order_completes_with_a_test_code_delivered_once_as_a_test(system: System) -> None:
    async with p.clients(system) as (order, voucher):
        campaign_id = await p.campaign(voucher, order, "sandbox", codes=2)
        test_codes = await voucher.post(
            f"/v1/campaigns/{campaign_id}/codes/generate", json={"count": 2, "test": True}
        )
        partners = await voucher.patch(f"/v1/campaigns/{campaign_id}", json={"partner_ids": [PARTNER]})
        assert test_codes.status_code == 201, test_codes.text
        assert partners.status_code == 200, partners.text

        test_record = p.record(campaign_id, f"sandbox-test-{RUN}", 1)
        real_record = p.record(campaign_id, f"sandbox-real-{RUN}", 2)
        placed_test = await p.place(order, {**test_record, "test": "true"})
        placed_real = await p.place(order, real_record)
        test_order = await _completed(order, placed_test["order_id"])
        real_order = await _completed(order, placed_real["order_id"])

        assert (test_order["test"], real_order["test"]) == (True, False)
        listed = await p.orders(order, campaign_id, test="true")
        assert [o["order_id"] for o in listed] == [test_order["order_id"]]
        summary = await p.summary(order, campaign_id)
        assert (summary["by_state"]["completed"], summary["test"]["by_state"]["completed"]) == (1, 1)

        test_code_id = await _code_of(system, campaign_id, test_order["order_id"])
        real_code_id = await _code_of(system, campaign_id, real_order["order_id"])
        test_code = (await voucher.get(f"/v1/codes/{test_code_id}")).json()
        real_code = (await voucher.get(f"/v1/codes/{real_code_id}")).json()
        assert (test_code["test"], real_code["test"]) == (True, False)

        test_subjects = _subjects_to(system, test_record["email"].lower())
        real_subjects = _subjects_to(system, real_record["email"].lower())
        assert len(test_subjects) == 1, test_subjects
        assert test_subjects[0].startswith("[TEST] ")
        assert len(real_subjects) == 1, real_subjects
        assert not real_subjects[0].startswith("[TEST]")

        revealed = await voucher.post(f"/v1/codes/{test_code_id}/reveal", json={"reason": "UAT sandbox"})
        assert revealed.status_code == 200, revealed.text
        partner = system.headers("partner", PARTNER)

        async def redeem(test_mode: bool, key: str) -> httpx.Response:
            body = {
                "code": revealed.json()["code"],
                "channel": "online",
                "idempotency_key": f"{key}-{RUN}",
                "test_mode": test_mode,
            }
            return await voucher.post("/v1/redemptions", json=body, headers=partner)

        live = await redeem(False, "sandbox-live")
        uat = await redeem(True, "sandbox-uat")
        assert live.status_code == 422, live.text
        assert live.json()["code"] == "test_code_in_live_mode"
        assert uat.status_code == 200, uat.text

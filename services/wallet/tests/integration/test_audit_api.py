"""The wallet service's audit API shows staff adjustments and freezes as they happen."""

from __future__ import annotations

import uuid

from chassis.testing import audit_trail, audit_verification

from .conftest import RunningWallet


async def test_staff_adjustments_and_freezes_appear_in_the_audit_log(wallet: RunningWallet) -> None:
    member = f"m-{uuid.uuid4().hex[:8]}"
    adjusted = await wallet.http.post(
        f"/v1/members/{member}/adjustments",
        json={"amount": "50", "reason_code": "goodwill", "reason": "late delivery"},
        headers=wallet.auth("finance", "fiona"),
    )
    frozen = await wallet.http.post(
        f"/v1/members/{member}/freeze", json={"reason": "fraud check"}, headers=wallet.auth("admin", "ann")
    )
    assert (adjusted.status_code, frozen.status_code) == (201, 200), (adjusted.text, frozen.text)

    trail = await audit_trail(wallet.http, wallet.auth("auditor"), subject_type="member", subject_id=member)
    by_ann = await audit_trail(wallet.http, wallet.auth("auditor"), actor="admin:ann")

    assert [(e["action"], e["actor"]) for e in trail] == [
        ("wallet.manual_adjustment", "finance:fiona"),
        ("wallet.wallet_frozen", "admin:ann"),
    ]
    assert trail[0]["details"]["amount"] == "50"
    assert [e["seq"] for e in by_ann] == [trail[1]["seq"]]
    assert await audit_verification(wallet.http, wallet.auth("admin")) == {
        "ok": True,
        "entries": 2,
        "first_broken_seq": None,
    }
    assert (await wallet.http.get("/v1/audit", headers=wallet.auth("finance"))).status_code == 403

"""The voucher service's audit API shows campaign and code operations as they happen."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from chassis.testing import audit_trail, audit_verification

from .conftest import Voucher, auth


async def test_campaign_creation_and_code_generation_appear_in_the_audit_log(
    start_voucher: Callable[..., Awaitable[Voucher]],
) -> None:
    voucher = await start_voucher()
    campaign_id = await voucher.create_campaign()
    await voucher.generate(campaign_id, 3)

    trail = await audit_trail(voucher.http, auth("auditor"), subject_type="campaign", subject_id=campaign_id)
    generated = await audit_trail(voucher.http, auth("admin"), action="codes.generated", actor="ops:tester")

    assert [(e["action"], e["actor"]) for e in trail] == [
        ("campaign.created", "admin:tester"),
        ("codes.generated", "ops:tester"),
    ]
    assert [e["subject_id"] for e in generated] == [campaign_id]
    assert await audit_verification(voucher.http, auth("auditor")) == {
        "ok": True,
        "entries": len(await audit_trail(voucher.http, auth("auditor"))),
        "first_broken_seq": None,
    }
    assert (await voucher.http.get("/v1/audit", headers=auth("ops"))).status_code == 403

"""Staff adjustments above the approval limit wait for a second person holding the approver permission."""

from __future__ import annotations

import uuid

from chassis.tests.approvals_support import announced, audited, decide, pending_ids

from .conftest import RunningWallet

URL = "/v1/members/{member}/adjustments"
APPROVER = ["finance", "approver"]


async def balance(wallet: RunningWallet, member: str) -> str:
    answer = await wallet.http.get(f"/v1/members/{member}/wallet", headers=wallet.auth("admin"))
    return str(answer.json()["balance"])


async def ask(wallet: RunningWallet, member: str, points: str, maker: str = "fiona"):
    body = {"amount": points, "reason_code": "goodwill", "reason": f"make good {points}"}
    return await wallet.http.post(URL.format(member=member), json=body, headers=wallet.auth("finance", maker))


async def test_an_adjustment_within_the_limit_is_posted_at_once(wallet: RunningWallet) -> None:
    member = f"m-{uuid.uuid4().hex[:8]}"

    answer = await ask(wallet, member, "10000")

    assert answer.status_code == 201, answer.text
    assert await balance(wallet, member) == "10000"


async def test_a_large_adjustment_waits_until_another_approver_approves_it_once(
    wallet: RunningWallet,
) -> None:
    member = f"m-{uuid.uuid4().hex[:8]}"

    asked = await ask(wallet, member, "25000")
    assert asked.status_code == 202, asked.text
    approval = asked.json()
    approval_id = approval["approval_id"]
    assert (approval["status"], approval["kind"], approval["maker"]) == (
        "pending",
        "wallet_adjustment",
        "finance:fiona",
    )
    assert asked.headers["Location"] == f"/v1/approvals/{approval_id}"
    assert await balance(wallet, member) == "0"
    assert approval_id in await pending_ids(wallet.http, wallet.auth("auditor"), "wallet_adjustment")

    own = await decide(wallet.http, approval_id, "approve", wallet.auth(APPROVER, "fiona"))
    without_permission = await decide(wallet.http, approval_id, "approve", wallet.auth("finance", "frank"))
    assert (own.status_code, own.json()["code"]) == (403, "maker_cannot_approve")
    assert without_permission.status_code == 403
    assert await balance(wallet, member) == "0"

    approved = await decide(
        wallet.http, approval_id, "approve", wallet.auth(APPROVER, "paula"), note="checked"
    )
    again = await decide(wallet.http, approval_id, "approve", wallet.auth("admin", "ann"))

    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert approved.json()["decided_by"] == "approver:paula"
    assert (again.status_code, again.json()["code"]) == (409, "approval_already_decided")
    assert await balance(wallet, member) == "25000"
    history = await wallet.http.get(f"/v1/members/{member}/history", headers=wallet.auth("admin"))
    assert [(e["amount"], e["actor"]) for e in history.json()["entries"]] == [("25000", "finance:fiona")]
    assert approval_id not in await pending_ids(wallet.http, wallet.auth("auditor"), "wallet_adjustment")
    pool = wallet.runtime.pool
    assert pool is not None
    assert await audited(pool, approval_id) == [
        ("approval.requested", "finance:fiona"),
        ("approval.approved", "approver:paula"),
    ]
    assert await announced(wallet.bootstrap, approval_id, decisions=1) == [
        ("approval.requested", None),
        ("approval.decided", "approved"),
    ]


async def test_a_rejected_adjustment_is_never_posted(wallet: RunningWallet) -> None:
    member = f"m-{uuid.uuid4().hex[:8]}"
    approval_id = (await ask(wallet, member, "50000")).json()["approval_id"]

    no_reason = await decide(wallet.http, approval_id, "reject", wallet.auth("admin", "ann"))
    rejected = await decide(
        wallet.http, approval_id, "reject", wallet.auth("admin", "ann"), reason="no ticket"
    )
    late = await decide(wallet.http, approval_id, "approve", wallet.auth(APPROVER, "paula"))

    assert no_reason.status_code == 422
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["decision_reason"]) == ("rejected", "no ticket")
    assert late.status_code == 409
    assert await balance(wallet, member) == "0"
    fetched = await wallet.http.get(f"/v1/approvals/{approval_id}", headers=wallet.auth("auditor"))
    assert fetched.json()["status"] == "rejected"
    pool = wallet.runtime.pool
    assert pool is not None
    assert await audited(pool, approval_id) == [
        ("approval.requested", "finance:fiona"),
        ("approval.rejected", "admin:ann"),
    ]


async def test_a_repeated_large_adjustment_waits_for_the_same_approval_and_then_answers_its_entry(
    wallet: RunningWallet,
) -> None:
    member = f"m-{uuid.uuid4().hex[:8]}"
    body = {
        "amount": "30000",
        "reason_code": "goodwill",
        "reason": "outage",
        "idempotency_key": f"k-{member}",
    }
    url = URL.format(member=member)

    first = await wallet.http.post(url, json=body, headers=wallet.auth("finance", "fiona"))
    again = await wallet.http.post(url, json=body, headers=wallet.auth("finance", "fiona"))
    approval_id = first.json()["approval_id"]
    approved = await decide(wallet.http, approval_id, "approve", wallet.auth(APPROVER, "paula"))
    after = await wallet.http.post(url, json=body, headers=wallet.auth("finance", "fiona"))

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["approval_id"] == approval_id
    assert (after.status_code, after.json()["entry_id"]) == (200, approved.json()["result"]["entry_id"])
    assert await balance(wallet, member) == "30000"


async def test_malformed_approval_requests_are_refused_naming_the_field_and_change_nothing(
    wallet: RunningWallet,
) -> None:
    member = f"m-{uuid.uuid4().hex[:8]}"
    approval_id = (await ask(wallet, member, "20000")).json()["approval_id"]
    checker = wallet.auth(APPROVER, "paula")

    answers = {
        "reason": await decide(wallet.http, approval_id, "reject", checker, reason="no\x00"),
        "note": await decide(wallet.http, approval_id, "approve", checker, note="x" * 2001),
        "approve_all": await decide(wallet.http, approval_id, "approve", checker, approve_all=True),
        "status": await wallet.http.get("/v1/approvals", params={"status": "maybe"}, headers=checker),
        "after": await wallet.http.get("/v1/approvals", params={"after": "not-an-id"}, headers=checker),
        "approval_id": await wallet.http.get("/v1/approvals/42", headers=checker),
    }
    unknown = await decide(wallet.http, str(uuid.uuid4()), "approve", checker)
    anonymous = await wallet.http.post(f"/v1/approvals/{approval_id}/approve")
    member_token = await decide(wallet.http, approval_id, "approve", wallet.auth("member", member))

    for field, answer in answers.items():
        assert answer.status_code == 422, (field, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        named = [e["field"] for e in answer.json()["errors"]]
        assert any(field in name for name in named), (field, named)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "approval_not_found")
    assert (anonymous.status_code, member_token.status_code) == (401, 403)
    still = await wallet.http.get(f"/v1/approvals/{approval_id}", headers=checker)
    assert still.json()["status"] == "pending"
    assert await balance(wallet, member) == "0"

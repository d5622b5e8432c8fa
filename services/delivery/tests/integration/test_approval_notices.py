"""Approvers hear of what waits for them, and makers of the decision, through the Slack/Teams notifier."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from chassis.testing import wait_until
from contracts.approvals import ApprovalDecided, ApprovalDecision, ApprovalRequested

from .test_notifier import _has, _notifying, receiver

__all__ = ["receiver"]


async def test_a_requested_approval_and_its_decision_are_posted_to_the_approvers(delivery_service, receiver):
    approval_id = uuid.uuid4()
    asked = {
        "approval_id": approval_id,
        "service": "wallet",
        "kind": "wallet_adjustment",
        "subject_id": "m-approvals",
        "summary": "manual adjustment of 25000 points for member m-approvals",
        "maker": "finance:fiona",
    }
    async with receiver() as hooks:
        service = await delivery_service(**_notifying(hooks))
        await service.publish(ApprovalRequested(**asked, reason="make good", requested_at=datetime.now(UTC)))
        await wait_until(_has(hooks, f"/v1/approvals/{approval_id}/approve"), what="the approval notice")
        await service.publish(
            ApprovalDecided(
                **asked,
                decision=ApprovalDecision.REJECTED,
                decided_by="approver:paula",
                reason="no ticket",
                decided_at=datetime.now(UTC),
            )
        )
        await wait_until(_has(hooks, "Rejected by approver:paula"), what="the decision notice")

    slack = hooks.slack_text()
    assert "Approval needed (wallet): manual adjustment of 25000 points for member m-approvals" in slack
    assert "asked by finance:fiona (make good)" in slack
    assert "no ticket" in slack
    assert any("Approvals" in str(post) for post in hooks.posts["teams"])

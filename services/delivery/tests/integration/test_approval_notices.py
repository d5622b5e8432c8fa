"""Approvers hear of what waits for them, and makers of the decision, through the Slack/Teams notifier."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from chassis.testing import wait_until
from contracts.approvals import ApprovalDecided, ApprovalDecision, ApprovalRequested

from .test_notifier import Receiver, _notifying, receiver

__all__ = ["receiver"]


def _teams_has(hooks: Receiver, text: str):  # Slack cuts a long section; a Teams card keeps every line
    async def check() -> bool:
        return text in json.dumps(hooks.posts["teams"])

    return check


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
        # The session's topic holds other tests' approvals too: all of them are posted, none summarised.
        service = await delivery_service(**_notifying(hooks))
        await service.publish(ApprovalRequested(**asked, reason="make good", requested_at=datetime.now(UTC)))
        link = f"/v1/approvals/{approval_id}/approve"
        await wait_until(_teams_has(hooks, link), what="the approval notice")
        await service.publish(
            ApprovalDecided(
                **asked,
                decision=ApprovalDecision.REJECTED,
                decided_by="approver:paula",
                reason="no ticket",
                decided_at=datetime.now(UTC),
            )
        )
        await wait_until(_teams_has(hooks, "Rejected by approver:paula"), what="the decision notice")

    teams = json.dumps(hooks.posts["teams"])
    assert "Approval needed (wallet): manual adjustment of 25000 points for member m-approvals" in teams
    assert "asked by finance:fiona (make good)" in teams
    assert "no ticket" in teams
    assert "Approvals" in hooks.slack_text()

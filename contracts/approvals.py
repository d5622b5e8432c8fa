"""Maker-checker approvals: `approval.requested` and `approval.decided`.

An action above its threshold (a large IPA batch, a campaign budget increase, a bulk recovery, a large
wallet adjustment) waits for a second person holding the approver permission. The service that holds
the action publishes both events; they name the action and its subject, never its request body (which
may carry contact details) — the service's `GET /v1/approvals/{id}` shows that to staff.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import Field

from contracts.envelope import EventData
from contracts.values import Actor, Identifier, Text, UtcDatetime


class ApprovalDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class ApprovalRequested(EventData):
    """An action waits for a second person's approval; approvers are told."""

    approval_id: uuid.UUID
    service: Identifier = Field(description="the service holding the action and its approval")
    kind: Identifier = Field(description="the action: ipa_batch, budget_increase, bulk_recovery, …")
    subject_id: Identifier = Field(description="what it acts on: batch id, campaign id, member id, …")
    summary: Text = Field(description="one line for people: what would be done")
    maker: Actor
    reason: Text | None = None
    requested_at: UtcDatetime


class ApprovalDecided(EventData):
    """A second person approved (the action was performed) or rejected a pending action."""

    approval_id: uuid.UUID
    service: Identifier
    kind: Identifier
    subject_id: Identifier
    summary: Text
    maker: Actor
    decision: ApprovalDecision
    decided_by: Actor
    reason: Text | None = Field(default=None, description="the rejection's reason, or the approver's note")
    decided_at: UtcDatetime

"""Campaign activity: `campaign.activity` (key `campaign_id`), what happened to a campaign's codes and
budget that its owners want to hear of. Facts only: counts and reasons, never a code."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from contracts.envelope import EventData
from contracts.values import Identifier, Text


class CampaignActivityKind(StrEnum):
    CODES_GENERATED = "codes_generated"
    CODES_IMPORTED = "codes_imported"
    CODES_RECOVERED = "codes_recovered"
    EXPIRY_EXTENDED = "expiry_extended"
    BUDGET_NEARLY_SPENT = "budget_nearly_spent"


class CampaignActivity(EventData):
    """Something done to a campaign's codes (by whom, how many) or its budget running low."""

    campaign_id: Identifier
    kind: CampaignActivityKind
    count: int | None = Field(default=None, ge=0, description="codes concerned, where it counts codes")
    actor: Identifier | None = Field(default=None, description="who did it; absent for the system's own")
    detail: Text | None = Field(default=None, description="the reason given, or the budget figures")

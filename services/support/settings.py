"""The support service's own settings (ORCHARD_SUPPORT_*), on top of the shared ones."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator

from chassis.auth import Role
from chassis.settings import Settings
from contracts.support import TicketPriority
from services.support.domain.goodwill import GoodwillLimit


class GoodwillLimitSetting(BaseModel):
    per_adjustment: int = Field(gt=0)
    per_day: int = Field(gt=0)

    @model_validator(mode="after")
    def _daily_covers_one(self) -> GoodwillLimitSetting:
        GoodwillLimit(self.per_adjustment, self.per_day)
        return self


def _default_goodwill_limits() -> dict[str, GoodwillLimitSetting]:
    return {
        "support_agent": GoodwillLimitSetting(per_adjustment=500, per_day=2000),
        "ops": GoodwillLimitSetting(per_adjustment=1000, per_day=5000),
        "admin": GoodwillLimitSetting(per_adjustment=10000, per_day=50000),
    }


class SupportSettings(Settings):
    service_name: str = Field(default="support", alias="ORCHARD_SERVICE")

    sla_warning_share: float = Field(default=0.8, gt=0, lt=1, alias="ORCHARD_SUPPORT_SLA_WARNING_SHARE")
    """A warning goes out when this share of a target's time is used (0.8: at 80 %)."""
    sla_check_interval_s: float = Field(default=5.0, gt=0, alias="ORCHARD_SUPPORT_SLA_CHECK_INTERVAL")
    auto_ticket_priority: TicketPriority = Field(
        default=TicketPriority.HIGH, alias="ORCHARD_SUPPORT_AUTO_TICKET_PRIORITY"
    )
    goodwill_limits: dict[str, GoodwillLimitSetting] = Field(
        default_factory=_default_goodwill_limits, alias="ORCHARD_SUPPORT_GOODWILL_LIMITS"
    )
    """JSON per role: {"support_agent": {"per_adjustment": 500, "per_day": 2000}, …}; roles not
    listed may not make goodwill adjustments."""

    @field_validator("goodwill_limits")
    @classmethod
    def _limits_name_roles(cls, limits: dict[str, GoodwillLimitSetting]) -> dict[str, GoodwillLimitSetting]:
        unknown = sorted(set(limits) - {str(role) for role in Role})
        if unknown:
            raise ValueError(f"goodwill limits name unknown role(s) {', '.join(unknown)}")
        return limits

    def goodwill_limit_table(self) -> dict[str, GoodwillLimit]:
        return {
            role: GoodwillLimit(limit.per_adjustment, limit.per_day)
            for role, limit in self.goodwill_limits.items()
        }

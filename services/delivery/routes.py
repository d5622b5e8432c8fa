"""What HTTP routes of the service take from their request besides the pool (`chassis.deps.DbPool`):
the runtime's settings."""

from __future__ import annotations

from fastapi import Request

from .settings import DeliverySettings


def request_settings(request: Request) -> DeliverySettings:
    settings = request.app.state.runtime.settings
    assert isinstance(settings, DeliverySettings)
    return settings

"""Where each service declares its settings and builds its spec, for tools that look at all six
without running them (the production checks of `orchard up`, the contract document, the tests that
pin subscriptions)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chassis.service import ServiceSpec
    from chassis.settings import Settings

# The module holding each service's `build_spec(settings)` (some answer `(spec, context)`).
SPEC_BUILDERS = {
    "order": "services.order.app",
    "voucher": "services.voucher.service",
    "delivery": "services.delivery.app",
    "wallet": "services.wallet.service",
    "redemption": "services.redemption.app",
    "support": "services.support.__main__",
}


def service_settings_class(package: str) -> type[Settings]:
    """The settings class a service package (`services.voucher`) declares in its `settings` module."""
    from chassis.settings import Settings

    module = importlib.import_module(f"{package}.settings")
    [found] = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Settings) and value.__module__ == module.__name__
    ]
    return found


def service_spec(service: str) -> ServiceSpec:
    """The service's spec as its process would build it from the current environment."""
    settings = service_settings_class(f"services.{service}")()
    built: Any = importlib.import_module(SPEC_BUILDERS[service]).build_spec(settings)
    spec: ServiceSpec = built[0] if isinstance(built, tuple) else built
    return spec

"""The order service process: IPA intake and the voucher order lifecycle."""

import os

from chassis.service import run_service

from .app import build_spec
from .settings import OrderSettings

if __name__ == "__main__":
    os.environ.setdefault("ORCHARD_SERVICE", "order")
    settings = OrderSettings()
    spec, _ = build_spec(settings)
    run_service(spec, settings)

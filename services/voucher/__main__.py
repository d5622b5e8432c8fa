"""`python -m services.voucher`: campaigns, code pools, issuance and partner redemption."""

from chassis.service import run_service

from .service import build_spec
from .settings import VoucherSettings

if __name__ == "__main__":
    settings = VoucherSettings()
    run_service(build_spec(settings), settings)

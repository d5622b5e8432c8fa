"""The wallet service process: points ledger, member dashboard and member audit log."""

from chassis.service import run_service

from .service import build_spec
from .settings import WalletSettings

if __name__ == "__main__":
    settings = WalletSettings()
    run_service(build_spec(settings), settings)

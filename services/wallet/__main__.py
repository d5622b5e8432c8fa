"""The wallet service process: points ledger, member dashboard and member audit log."""

from pathlib import Path

from chassis.service import run_named_service

if __name__ == "__main__":
    run_named_service(
        "wallet",
        "Orchard wallet service: points ledger, member dashboard and member audit log",
        Path(__file__).resolve().parent,
    )

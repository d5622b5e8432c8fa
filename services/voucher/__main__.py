"""The voucher service process: campaigns, code pools, issuance and partner redemption."""

from pathlib import Path

from chassis.service import run_named_service

if __name__ == "__main__":
    run_named_service(
        "voucher",
        "Orchard voucher service: campaigns, code pools, issuance and partner redemption",
        Path(__file__).resolve().parent,
    )

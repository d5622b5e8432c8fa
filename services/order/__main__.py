"""The order service process: IPA intake and the voucher order lifecycle."""

from pathlib import Path

from chassis.service import run_named_service

if __name__ == "__main__":
    run_named_service(
        "order",
        "Orchard order service: IPA intake and the voucher order lifecycle",
        Path(__file__).resolve().parent,
    )

"""The redemption service process: storefront saga, offer redemptions and exports."""

from pathlib import Path

from chassis.service import run_named_service

if __name__ == "__main__":
    run_named_service(
        "redemption",
        "Orchard redemption service: storefront saga, offer redemptions and exports",
        Path(__file__).resolve().parent,
    )

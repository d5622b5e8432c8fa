"""The redemption service process: storefront saga, offer redemptions, records, exports and retention."""

from chassis.service import run_service
from services.redemption.app import build_spec
from services.redemption.settings import RedemptionSettings

if __name__ == "__main__":
    settings = RedemptionSettings()
    run_service(build_spec(settings), settings)

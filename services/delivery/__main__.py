"""The delivery service process: email, SMS and WhatsApp delivery with retries and notifications."""

from chassis.service import run_service
from services.delivery.app import build_spec
from services.delivery.settings import DeliverySettings

if __name__ == "__main__":
    settings = DeliverySettings()
    run_service(build_spec(settings), settings)

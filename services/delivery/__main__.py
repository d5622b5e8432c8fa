"""The delivery service process: email, SMS and WhatsApp delivery with retries and notifications."""

from pathlib import Path

from chassis.service import run_named_service

if __name__ == "__main__":
    run_named_service(
        "delivery",
        "Orchard delivery service: email, SMS and WhatsApp delivery with retries and notifications",
        Path(__file__).resolve().parent,
    )

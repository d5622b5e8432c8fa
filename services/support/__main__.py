"""The support service process: tickets, SLAs and the agent portal."""

from pathlib import Path

from chassis.service import run_named_service

if __name__ == "__main__":
    run_named_service(
        "support",
        "Orchard support service: tickets, SLAs and the agent portal",
        Path(__file__).resolve().parent,
    )

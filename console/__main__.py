"""`python -m console`: serve the console (port 8100 unless ORCHARD_HTTP_PORT says otherwise)."""

from __future__ import annotations

import sys

import uvicorn

from console.app import create_app
from console.settings import ConsoleSettings


def main() -> int:
    settings = ConsoleSettings()
    if refusals := settings.startup_refusals():
        for line in refusals:
            print(f"console: {line}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())

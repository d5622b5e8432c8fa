"""A stand-in service for runner tests: serves /health/ready on ORCHARD_HTTP_PORT and exits on SIGTERM.

A service named in FAKE_SERVICE_CRASH (comma-separated) exits at once, as a broken build would.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        known = self.path in ("/health/ready", "/health/live")
        self.send_response(200 if known else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    name = os.environ["ORCHARD_SERVICE"]
    if name in os.environ.get("FAKE_SERVICE_CRASH", "").split(","):
        print(f"{name}: crashing on purpose", file=sys.stderr)
        sys.exit(3)
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["ORCHARD_HTTP_PORT"])), _Health)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"{name}: serving, DATABASE_URL set: {bool(os.environ.get('DATABASE_URL'))}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

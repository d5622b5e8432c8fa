"""`python -m deploy.identity`: run the development Keycloak in the foreground until SIGTERM.

A Python parent keeps the runner's process bookkeeping alike for every process it starts (pid file,
command-line marker); Keycloak itself is its child, tied to it, and stopped with it.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from types import FrameType

from deploy.identity.keycloak import ensure_keycloak, keycloak_command, keycloak_env
from deploy.infra.process import _die_with_parent


def main() -> int:
    if (os.environ.get("ORCHARD_ENV") or "").strip().lower() != "dev":
        print("the local identity provider runs in development mode only (ORCHARD_ENV=dev)", file=sys.stderr)
        return 2
    port = int(os.environ.get("ORCHARD_IDENTITY_PORT", "8180"))
    console_url = os.environ.get("ORCHARD_CONSOLE_URL", "http://127.0.0.1:8100")
    home = ensure_keycloak()
    env = {**os.environ, **keycloak_env(console_url, secrets.token_urlsafe(18))}
    child = subprocess.Popen(keycloak_command(home, port), env=env, preexec_fn=_die_with_parent)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())

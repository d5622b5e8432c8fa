"""Keycloak from its Maven Central distribution zip, unpacked once under `var/keycloak/` and run in dev
mode with an in-memory database, the `orchard` realm (realm-orchard.json) imported at every start.

Development only (DESIGN.md §5 "Identity"): the realm's demo users share a published password.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path

from deploy.infra.errors import InfraError
from deploy.infra.kafka import java_executable
from deploy.infra.net import LOCALHOST
from deploy.infra.paths import REPO_ROOT

KEYCLOAK_VERSION = "26.5.6"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:zip"
DEV_CONSOLE_CLIENT_SECRET = "orchard-console-dev-secret"
"""The console client's secret in the development realm (and console.settings' development default)."""
IDENTITY_PORT = 8180
REALM = "orchard"
REALM_FILE = Path(__file__).resolve().parent / "realm-orchard.json"
DEMO_PASSWORD = "orchard-demo"
DEMO_USERS: Mapping[str, str] = {
    "admin": "admin",
    "ops": "ops",
    "finance": "finance",
    "agent": "support_agent",
    "auditor": "auditor",
    "partner": "partner, sub demo-partner",
    "member": "member, sub demo-member-01",
}
"""Username → what it signs in as."""
_STAMP = ".complete"


def keycloak_home() -> Path:
    """The shared unpacked distribution; tests reuse what `orchard up` unpacked, and vice versa."""
    override = os.environ.get("ORCHARD_KEYCLOAK_HOME")
    return Path(override).resolve() if override else REPO_ROOT / "var" / "keycloak" / KEYCLOAK_VERSION


def issuer_url(port: int) -> str:
    return f"http://{LOCALHOST}:{port}/realms/{REALM}"


def ensure_keycloak(home: Path | None = None) -> Path:
    """Fetch the distribution with Maven once and unpack it with the realm in `data/import/`.

    Stamped with the hash of the version and the realm file, so changing either redoes the unpacking;
    filled beside and renamed, so an interrupted unpack never looks complete.
    """
    home = home or keycloak_home()
    wanted = hashlib.sha256(ARTIFACT.encode() + REALM_FILE.read_bytes()).hexdigest()
    stamp = home / _STAMP
    if _read(stamp) == wanted:
        return home
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f".{home.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # `orchard up` and a test session may both start on a new machine
        if _read(stamp) == wanted:
            return home
        partial = home.parent / f"{home.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        download = home.parent / "download"
        archive = _fetch_zip(download)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(partial)
        (top,) = [child for child in partial.iterdir() if child.is_dir()]  # keycloak-<version>/
        for script in (top / "bin").glob("*.sh"):
            script.chmod(0o755)
        (top / "data" / "import").mkdir(parents=True, exist_ok=True)
        shutil.copy(REALM_FILE, top / "data" / "import" / REALM_FILE.name)
        (top / _STAMP).write_text(wanted)
        shutil.rmtree(home, ignore_errors=True)
        top.rename(home)
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(download, ignore_errors=True)
    return home


def _fetch_zip(target: Path) -> Path:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven is required once to fetch Keycloak: mvn not found on PATH")
    target.mkdir(parents=True, exist_ok=True)
    log_file = target / "mvn.log"
    with log_file.open("w") as out:
        result = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={target}"],
            stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    archives = sorted(target.glob("keycloak-quarkus-dist-*.zip"))
    if result.returncode != 0 or not archives:
        raise InfraError(f"fetching Keycloak {KEYCLOAK_VERSION} from Maven Central failed; see {log_file}")
    return archives[0]


def keycloak_command(home: Path, port: int) -> list[str]:
    """`kc.sh start-dev` on loopback with an in-memory database and the realm imported."""
    return [
        str(home / "bin" / "kc.sh"), "start-dev",
        f"--http-host={LOCALHOST}", f"--http-port={port}",
        "--db=dev-mem", "--import-realm", "--health-enabled=false", "--metrics-enabled=false",
    ]  # fmt: skip


def keycloak_env(console_url: str, admin_password: str) -> dict[str, str]:
    java = Path(java_executable()).resolve()
    return {
        "JAVA_HOME": str(java.parent.parent),
        "JAVA_OPTS_KC_HEAP": "-Xms64m -Xmx512m",
        "KC_BOOTSTRAP_ADMIN_USERNAME": "kcadmin",
        "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
        "ORCHARD_CONSOLE_URL": console_url,
        "ORCHARD_CONSOLE_CLIENT_SECRET": DEV_CONSOLE_CLIENT_SECRET,
    }


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None

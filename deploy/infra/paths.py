"""Where local state lives: everything the runner and the tests write goes under one `var/` directory."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = Path(__file__).resolve().parents[1]
KAFKA_CONFIG_DIR = DEPLOY_DIR / "kafka"


def var_dir() -> Path:
    """`ORCHARD_VAR_DIR`, else `<repo>/var` (the same default as chassis.settings)."""
    return Path(os.environ.get("ORCHARD_VAR_DIR") or REPO_ROOT / "var").resolve()


def kafka_libs_dir() -> Path:
    """The shared cache of broker jars; tests reuse the jars `orchard up` fetched, and vice versa."""
    override = os.environ.get("ORCHARD_KAFKA_LIBS")
    return Path(override).resolve() if override else REPO_ROOT / "var" / "kafka" / "libs"

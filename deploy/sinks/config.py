"""What every local sink reads from its environment: where it listens, where it keeps what it took,
and whether it counts repeats."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deploy.infra.paths import var_dir
from deploy.sinks.receipts import counting_repeats


def listening(prefix: str, default_port: int) -> dict[str, Any]:
    """`host`, `port` (from `<prefix>_HOST`, `<prefix>_PORT`) and `count_repeats` of a sink's config."""
    return {
        "host": os.environ.get(f"{prefix}_HOST", "127.0.0.1"),
        "port": int(os.environ.get(f"{prefix}_PORT", str(default_port))),
        "count_repeats": counting_repeats(),
    }


def sink_dir(env_name: str, name: str) -> Path:
    """The directory named by `env_name`, else `<var>/<name>`."""
    return Path(os.environ.get(env_name) or var_dir() / name)

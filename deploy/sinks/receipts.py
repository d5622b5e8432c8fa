"""Counting every receipt, repeats included (`ORCHARD_SINK_COUNT_REPEATS=1`).

The sinks dedupe toward the service: a message sent again with the same Message-ID (SMTP) or
idempotency token (provider) leaves one file, and the provider answers the original message. That
hides how often a message was sent again. In counting mode each sink also appends one line per
message it took — first or repeat — to `receipts.log` in its directory: the message's key (Message-ID,
or idempotency token / sid). Receipts - distinct keys = messages sent again. Off by default: the
line costs a write per message."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

COUNT_REPEATS_ENV = "ORCHARD_SINK_COUNT_REPEATS"
RECEIPTS_FILE = "receipts.log"


def counting_repeats() -> bool:
    return os.environ.get(COUNT_REPEATS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class ReceiptLog:
    """Appends one line per receipt. Each line is one unbuffered O_APPEND write: a line is either
    there whole or not at all, and a sink killed afterwards keeps it (it is in the kernel already)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / RECEIPTS_FILE
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def add(self, key: str) -> None:
        os.write(self._fd, key.replace("\n", " ").encode() + b"\n")

    def close(self) -> None:
        os.close(self._fd)


def receipts_in(directory: Path) -> Counter[str]:
    """Receipts per key from a sink's log (empty when the sink does not count)."""
    path = directory / RECEIPTS_FILE
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().splitlines() if line)


def resent(directory: Path, keys: set[str] | None = None) -> tuple[int, int]:
    """(receipts, distinct keys) in a sink's log, only of `keys` when given."""
    counts = receipts_in(directory)
    if keys is not None:
        counts = Counter({k: n for k, n in counts.items() if k in keys})
    return sum(counts.values()), len(counts)

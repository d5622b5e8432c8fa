"""A registry-shaped topic spec for the probe's throwaway topics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeTopic:
    name: str
    partitions: int = 3
    retention_ms: int = 3_600_000

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


def probe_topic(name: str) -> ProbeTopic:
    return ProbeTopic(name)

"""How many copies of each topic the broker keeps (DESIGN.md §5 "Production by default").

In development (one local broker) every topic has one replica. Anywhere else the defaults are a
replication factor of 3 and `min.insync.replicas` 2, so a write the relay's producer saw acknowledged
(acks=all) survives the loss of a broker; `orchard up` and `orchard init` refuse fewer than 2 of either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FACTOR_SETTING = "ORCHARD_TOPIC_REPLICATION_FACTOR"
MIN_INSYNC_SETTING = "ORCHARD_TOPIC_MIN_INSYNC_REPLICAS"


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dev: bool) -> Replication:
        factor_default, min_insync_default = (1, 1) if dev else (3, 2)
        return cls(
            factor=_positive(env, FACTOR_SETTING, factor_default),
            min_insync=_positive(env, MIN_INSYNC_SETTING, min_insync_default),
        )

    def refusals(self, *, dev: bool) -> list[str]:
        """One line per setting that would let an acknowledged event be lost (outside development) or
        that no broker could satisfy."""
        refusals = []
        if not dev and self.factor < 2:
            refusals.append(
                f"{FACTOR_SETTING}={self.factor}: outside development every topic needs at least 2 replicas"
            )
        if not dev and self.min_insync < 2:
            refusals.append(
                f"{MIN_INSYNC_SETTING}={self.min_insync}: outside development an acknowledged write needs "
                "at least 2 in-sync replicas"
            )
        if self.min_insync > self.factor:
            refusals.append(
                f"{MIN_INSYNC_SETTING}={self.min_insync} exceeds {FACTOR_SETTING}={self.factor}: "
                "no write could ever be acknowledged"
            )
        return refusals


def _positive(env: Mapping[str, str], setting: str, default: int) -> int:
    raw = env.get(setting, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        from deploy.infra.errors import InfraError

        raise InfraError(f"{setting}={raw!r} is not a whole number of at least 1")
    return value

"""`python -m bench.tracing` (run by `make bench` after the pipeline): what tracing costs per order.

Issue 21's bound: at most 10 % more CPU per order with tracing on at the default sampling. The same
burst runs on fresh systems (`orchard up` on free ports, as `bench.pipeline` starts them) in
alternating rounds, so that whatever else the machine does lands on both modes alike:

- `off`: no tracing SDK in any process (`OTEL_TRACES_EXPORTER=none`, `ORCHARD_TRACES_TO_FILE=0`): the
  no-op tracer, trace context still passed along unchanged;
- `on`: the default, as `orchard up` runs it: the SDK in every process, 1 new trace in 20 recorded
  (parent-based), spans written as OTLP JSON lines under var/traces/;
- `always` (with `--always-on`): every trace recorded, for scale.

Per round: CPU ms per order of the burst summed over Orchard's services, Kafka and PostgreSQL (the local
sinks apart), as `bench.pipeline` counts it; per mode the median over its rounds; the overhead is
median(on) / median(off) - 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .measure import add_json_option, quiet_logs, save_record
from .pipeline import _burst, _warm_up
from .pipeline_drive import Tracker, create_campaign
from .pipeline_monitor import Monitor
from .pipeline_system import OWN_SYSTEM_ENV, System, own_system

MODES: Mapping[str, Mapping[str, str]] = {
    "off": {"OTEL_TRACES_EXPORTER": "none", "ORCHARD_TRACES_TO_FILE": "0"},
    "on": {},
    "always": {"OTEL_TRACES_SAMPLER": "always_on"},
}
BOUND = 0.10


async def _round(system: System, orders: int, warm_up: int) -> dict[str, Any]:
    tracker = Tracker(system.bootstrap)
    monitor = Monitor(
        system.bootstrap, system.pids() | system.infra_pids(), completed=lambda: len(tracker.completed)
    )
    run = uuid.uuid4().hex[:6]
    async with monitor.running(), tracker.running():
        campaign_id = await create_campaign(system.urls, f"tracing-{run}", codes=orders + warm_up)
        tracker.campaigns.add(campaign_id)
        await _warm_up(system, monitor, tracker, campaign_id, run, warm_up)
        burst = await _burst(system, monitor, tracker, campaign_id, run, orders, None)
    return {
        "orders_per_s": burst["orders_per_s"],
        "cpu_ms_per_order": burst["cpu_ms_per_order"],
        "orchard_ms": burst["cpu_ms_per_order_totals"]["orchard"],
        "sink_ms": burst["cpu_ms_per_order_totals"]["sink"],
    }


def overhead(rounds: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per mode the median CPU ms per order (Orchard + Kafka + PostgreSQL); each mode's overhead
    against `off`."""
    medians = {mode: statistics.median(r["orchard_ms"] for r in rs) for mode, rs in rounds.items() if rs}
    base = medians.get("off")
    return {
        "median_ms": medians,
        "overhead": {m: (v / base - 1.0) for m, v in medians.items() if base and m != "off"},
    }


def render(result: Mapping[str, Any]) -> str:
    lines = ["tracing overhead, CPU ms per order over Orchard + Kafka + PostgreSQL (sinks apart):"]
    for mode, rounds in result["rounds"].items():
        each = ", ".join(f"{r['orchard_ms']:.2f} ({r['orders_per_s']:.0f}/s)" for r in rounds)
        lines.append(f"  {mode:<7} median {result['median_ms'][mode]:.2f}   rounds: {each}")
    for mode, share in result["overhead"].items():
        verdict = "met" if mode != "on" or share <= BOUND else "NOT met"
        target = f"  (target ≤ {BOUND:.0%}: {verdict})" if mode == "on" else ""
        lines.append(f"  {mode} vs off: {share:+.1%}{target}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--orders", type=int, default=3000, help="orders per burst (default 3000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode, alternating (default 2)")
    parser.add_argument("--always-on", action="store_true", help="also every trace recorded")
    add_json_option(parser)
    args = parser.parse_args()
    if args.orders < 1 or args.rounds < 1:
        parser.error("--orders ≥ 1 and --rounds ≥ 1")
    quiet_logs(kafka_client_errors_only=True)
    modes = ["off", "on"] + (["always"] if args.always_on else [])
    warm_up = min(200, max(20, args.orders // 20))
    rounds: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    started_at = datetime.now(UTC)
    for i in range(args.rounds):
        for mode in modes if i % 2 == 0 else reversed(modes):
            print(f"round {i + 1}, tracing {mode}: a system of its own, {args.orders} orders", flush=True)
            with own_system(env={**OWN_SYSTEM_ENV, **MODES[mode]}) as system:
                rounds[mode].append(asyncio.run(_round(system, args.orders, warm_up)))
    result = {
        "started_at": started_at.isoformat(),
        "orders": args.orders,
        "rounds": rounds,
        "load_average_end": os.getloadavg(),
        **overhead(rounds),
    }
    print()
    print(render(result))
    save_record(result, "tracing-", started_at, args.json)


if __name__ == "__main__":
    main()

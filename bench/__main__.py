"""`python -m bench [--events N | --quick] [--json PATH]`: one run, a table, and a JSON record."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
from datetime import UTC, datetime
from typing import Any

import psutil

from contracts.envelope import Envelope
from contracts.vouchers import VoucherIssued

from . import baselines, measure, messaging
from .infra import Infra, open_infra
from .measure import PARTITIONS, Measurement, message_key, save_record, voucher_issued_events

OURS = ("c1", "c50", "d")
BASELINES = ("a", "b1", "b8")

EXPLANATION = """\
Each ratio divides one of our scenarios' events/s by a raw baseline's. Both ran in this run, in this
process, against the same broker and database, with the same envelope bytes (a real voucher.issued)
and the relay's producer settings, so machine, load and tuning cancel out and what is left is the
cost of our layer. (a) is aiokafka alone: an idempotent acks=all producer and an already assigned
consumer moving every message end to end; it touches no database, so it is a ceiling. (b) is asyncpg
alone: one-row INSERT transactions, the shape of a handler's commit, on one connection (b1) and from
8 concurrent workers (b8). Per event the outbox (c) adds its row in the writer's transaction (whose
trigger NOTIFYs the relay) and the relay's claim and UPDATE ... SET published_at around the Kafka
publish; 50 events per transaction share one commit, so (c50) can beat (b). The inbox consumer (d)
adds one inbox row per event, written with the handler's effect row in one transaction per fetched
batch, and commits Kafka offsets only after that; the batching is why (d) can beat (b)."""


async def run_all(infra: Infra, count: int) -> list[Measurement]:
    envelopes = voucher_issued_events(count)
    # A small unrecorded pass first: whichever scenario ran first would otherwise pay alone for the
    # JVM's JIT, the offsets topic's creation and the first connections. Its one-off broker warnings
    # (no group coordinator yet) are muted; the recorded pass keeps them.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    await measure_all(infra, envelopes[: max(count // 10, 200)])
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    return await measure_all(infra, envelopes)


async def measure_all(infra: Infra, envelopes: list[Envelope[VoucherIssued]]) -> list[Measurement]:
    # Topics are made before the database scenarios, which give them seconds to settle: a partition's
    # first produce and fetch can meet NotLeaderForPartition just after creation, and those retries
    # would land on a clock.
    raw, outbox_1, outbox_50, inbox = [await infra.new_topic(PARTITIONS) for _ in range(4)]
    messages = [(message_key(e).encode(), e.to_bytes()) for e in envelopes]
    rows = [(e.event_id, value) for e, (_, value) in zip(envelopes, messages, strict=True)]
    database_baselines = [
        await baselines.postgres_inserts(infra, rows, workers=1),
        await baselines.postgres_inserts(infra, rows, workers=8),
    ]
    return [
        await baselines.kafka_round_trip(infra, raw, messages),
        *database_baselines,
        await messaging.outbox(infra, outbox_1, envelopes, per_txn=1),
        await messaging.outbox(infra, outbox_50, envelopes, per_txn=50),
        await messaging.inbox(infra, inbox, envelopes),
    ]


def ratios(results: list[Measurement]) -> dict[str, float]:
    by_key = {m.key: m for m in results}
    return {f"{ours}/{base}": by_key[ours].rate / by_key[base].rate for ours in OURS for base in BASELINES}


def render(results: list[Measurement], ratio: dict[str, float], record: dict[str, Any]) -> str:
    lines = [
        f"Orchard messaging bench: {record['events']} events of {record['envelope_bytes']} bytes,"
        f" {record['machine']['cpus']} CPUs; Kafka: {record['infra']['kafka']};"
        f" Postgres: {record['infra']['postgres']}",
        "",
        f"{'':4} {'scenario':52} {'events':>7} {'seconds':>8} {'events/s':>9}  notes",
    ]
    for m in results:
        notes = "  ".join(f"{k} {v:.0f}" for k, v in m.extra.items())
        lines.append(f"{m.key:4} {m.label:52} {m.events:7d} {m.seconds:8.2f} {m.rate:9.0f}  {notes}".rstrip())
    lines += ["", "ratio (ours / baseline)  " + "".join(f"{'/' + b:>8}" for b in BASELINES)]
    for ours in OURS:
        lines.append(f"{ours:25}" + "".join(f"{ratio[f'{ours}/{b}']:8.2f}" for b in BASELINES))
    lines += ["", EXPLANATION, "", f"bench process RSS at the end: {record['rss_bytes'] / 2**20:.0f} MiB"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per scenario (default 20000)")
    parser.add_argument("--quick", action="store_true", help="smoke run with 2000 events")
    measure.add_json_option(parser)
    args = parser.parse_args()
    count = 2_000 if args.quick else args.events
    if count < 1:
        parser.error("--events must be at least 1")
    # Keep the table readable: the chassis and its libraries log each start and stop at INFO.
    measure.quiet_logs()

    started_at = datetime.now(UTC)
    with open_infra() as infra:
        results = asyncio.run(run_all(infra, count))
        sources = infra.sources
    ratio = ratios(results)
    record: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "events": count,
        "envelope_bytes": len(voucher_issued_events(1)[0].to_bytes()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()},
        "infra": sources,
        "results": [
            {"key": m.key, "label": m.label, "events": m.events, "seconds": m.seconds, "events_per_s": m.rate}
            | m.extra
            for m in results
        ],
        "ratios": ratio,
        "rss_bytes": psutil.Process().memory_info().rss,
    }
    print(render(results, ratio, record))
    save_record(record, "", started_at, args.json)


if __name__ == "__main__":
    main()

"""`python -m bench.pipeline` (`make bench`): the whole system, from Kafka in to delivered out.

Phases, in one run against one system: a warm-up; a burst of N allocations on `ipa.record_submitted`
(orders/s end to end, latency submission → completed, lag per consumer group, CPU and RSS per process);
a steady rate (latency under load); a big IPA CSV through the order API (upload → validated → accepted
→ delivered); and the raw baselines (aiokafka produce+consume, asyncpg single-row INSERT transactions)
on the same broker and database, with the ratios. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from contracts.registry import TOPICS
from deploy.infra.postgres import provision_database

from . import baselines, pipeline_profile
from .infra import Infra
from .pipeline_drive import (
    SMS_EVERY,
    Tracker,
    create_campaign,
    hris_producer,
    send_burst,
    send_steady,
    submitted_messages,
    upload_csv,
    write_csv,
)
from .pipeline_monitor import Monitor
from .pipeline_report import render, write_plot
from .pipeline_stats import Ceiling, latency_summary, messages_per_order, ratio_table
from .pipeline_system import System, own_system, running_system

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Options:
    orders: int
    rate: float
    duration: float
    csv_rows: int
    warm_up: int
    profile: bool


async def _xact_commits(dsn: str) -> int:
    """Transactions committed in the services' database so far (pg_stat_database, flushed ~1/s)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(
            await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        )
    finally:
        await conn.close()


async def _topic_ends(monitor: Monitor) -> dict[str, int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=monitor.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await monitor.end_offsets(consumer)
    finally:
        await consumer.stop()
    per_topic: dict[str, int] = {}
    for (name, _), offset in ends.items():
        per_topic[name] = per_topic.get(name, 0) + offset
    return per_topic


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


async def _burst(
    system: System,
    monitor: Monitor,
    tracker: Tracker,
    campaign_id: str,
    run: str,
    n: int,
    profile_dir: Path | None,
) -> dict[str, Any]:
    messages = submitted_messages(f"b{run}", campaign_id, 0, n)
    producer = hris_producer(system.bootstrap)
    await producer.start()
    profiling = pipeline_profile.start(system.pids(), profile_dir) if profile_dir else {}
    try:
        ends_before = await _topic_ends(monitor)
        commits_before = await _xact_commits(system.orchard_dsn)
        cpu_before = monitor.cpu()
        monitor.phase = "burst"
        sent = await send_burst(producer, messages)
        submitted = time.monotonic()
        last = await tracker.wait_for(list(sent), what="burst")
        cpu = _cpu_delta(cpu_before, monitor.cpu())
        monitor.phase = "after burst"
    finally:
        await producer.stop()
        profiles = pipeline_profile.stop(profiling) if profiling else {}
    await asyncio.sleep(1.5)  # the relays publish the last events; pg_stat_database flushes
    ends_after = await _topic_ends(monitor)
    commits = await _xact_commits(system.orchard_dsn) - commits_before
    first = min(sent.values())
    seconds = last - first
    hops = messages_per_order(ends_before, ends_after, n)
    hops.pop("ipa.record_submitted", None)  # ours, not the pipeline's: counted once below as the input
    return {
        "orders": n,
        "seconds": seconds,
        "orders_per_s": n / seconds,
        "submit_seconds": submitted - first,
        "latency": latency_summary([tracker.completed[r] - sent[r] for r in sent]),
        "messages_per_order": {"ipa.record_submitted": 1.0, **hops},
        "kafka_messages_per_order": 1.0 + sum(hops.values()),
        "db_commits_per_order": commits / n,
        "cpu_s": cpu,
        "cpu_ms_per_order": {name: 1000 * s / n for name, s in cpu.items()},
        "profiles": {name: str(path) for name, path in profiles.items()},
        "hot_spots": {name: pipeline_profile.hot_spots(path.read_text()) for name, path in profiles.items()},
    }


async def _steady(
    system: System,
    monitor: Monitor,
    tracker: Tracker,
    campaign_id: str,
    run: str,
    rate: float,
    duration: float,
) -> dict[str, Any]:
    n = max(1, round(rate * duration))
    messages = submitted_messages(f"s{run}", campaign_id, 0, n)
    producer = hris_producer(system.bootstrap)
    await producer.start()
    try:
        monitor.phase = "steady"
        sent = await send_steady(producer, messages, rate)
        last = await tracker.wait_for(list(sent), what="steady rate")
        monitor.phase = "after steady"
    finally:
        await producer.stop()
    first = min(sent.values())
    return {
        "rate": rate,
        "duration_s": duration,
        "orders": n,
        "offered_per_s": (n - 1) / (max(sent.values()) - first) if n > 1 else rate,
        "completed_per_s": n / (last - first),
        "latency": latency_summary([tracker.completed[r] - sent[r] for r in sent]),
    }


async def _csv(
    system: System, monitor: Monitor, campaign_id: str, run: str, rows: int, work: Path
) -> dict[str, Any]:
    path = work / "allocations.csv"
    write_csv(path, f"c{run}", campaign_id, rows)
    monitor.phase = "csv"
    times = await upload_csv(system.urls["order"], path, rows)
    monitor.phase = "after csv"
    return asdict(times) | {"csv_bytes": path.stat().st_size}


async def _baselines(system: System, run: str, campaign_id: str, n: int) -> dict[str, Any]:
    infra = Infra(
        bootstrap=system.bootstrap,
        admin_dsn=await provision_database(system.server_dsn, "orchard_bench"),
        sources={"kafka": "the system's broker", "postgres": "the system's server, database orchard_bench"},
    )
    sample = submitted_messages(f"r{run}", campaign_id, 0, n)
    messages = [(ref.encode(), value) for ref, value in sample]
    rows = [(uuid.uuid4(), value) for _, value in sample]
    # The topic first: the database baselines give its partitions time to elect leaders.
    name = await infra.new_topic(6)
    try:
        pg1 = await baselines.postgres_inserts(infra, rows, workers=1)
        pg8 = await baselines.postgres_inserts(infra, rows, workers=8)
        kafka = await baselines.kafka_round_trip(infra, name, messages)
    finally:
        if not system.owned:
            await infra.drop_topics()
    return {
        "messages": n,
        "message_bytes": sum(len(v) for _, v in messages) / n,
        "kafka_msgs_per_s": kafka.rate,
        "pg_commits_per_s_1": pg1.rate,
        "pg_commits_per_s_8": pg8.rate,
    }


RATES = ("kafka_msgs_per_s", "pg_commits_per_s_1", "pg_commits_per_s_8")


def mean_baselines(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Each raw rate as the mean of the runs before and after the pipeline, both runs kept."""
    return after | {k: (before[k] + after[k]) / 2 for k in RATES} | {"before": before, "after": after}


async def run(system: System, options: Options, work: Path, profile_dir: Path | None) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    tracker = Tracker(system.bootstrap)
    monitor = Monitor(
        system.bootstrap,
        system.pids() | system.infra_pids(),
        completed=lambda: len(tracker.completed),
        in_flight=tracker.in_flight,
    )
    record: dict[str, Any] = {}
    async with monitor.running(), tracker.running():
        print("setting up campaigns and codes (not timed)", flush=True)
        burst_campaign = await create_campaign(system.urls, "burst", codes=options.orders + options.warm_up)
        steady_n = round(options.rate * options.duration)
        steady_campaign = (
            await create_campaign(system.urls, "steady", codes=max(1, steady_n)) if steady_n else ""
        )
        csv_campaign = (
            await create_campaign(system.urls, "csv", codes=options.csv_rows) if options.csv_rows else ""
        )
        tracker.campaigns |= {c for c in (burst_campaign, steady_campaign, csv_campaign) if c}

        # Baselines before and after the pipeline: on a shared machine each moves with whatever else runs,
        # so the ceiling takes their mean and the report shows both.
        print("raw baselines on the same broker and server", flush=True)
        monitor.phase = "baselines"
        before = await _baselines(system, run, burst_campaign, max(options.orders, 5000))
        print(f"warm-up: {options.warm_up} orders (not recorded)", flush=True)
        monitor.phase = "warm-up"
        producer = hris_producer(system.bootstrap)
        await producer.start()
        try:
            warm = await send_burst(
                producer, submitted_messages(f"w{run}", burst_campaign, 0, options.warm_up)
            )
        finally:
            await producer.stop()
        await tracker.wait_for(list(warm), what="warm-up")

        print(f"burst: {options.orders} orders", flush=True)
        record["burst"] = await _burst(
            system, monitor, tracker, burst_campaign, run, options.orders, profile_dir
        )
        if steady_n:
            print(f"steady: {options.rate:g} orders/s for {options.duration:g} s", flush=True)
            await asyncio.sleep(2)
            record["steady"] = await _steady(
                system, monitor, tracker, steady_campaign, run, options.rate, options.duration
            )
        if options.csv_rows:
            print(f"CSV: {options.csv_rows} rows through POST /v1/ipa/batches", flush=True)
            await asyncio.sleep(2)
            record["csv"] = await _csv(system, monitor, csv_campaign, run, options.csv_rows, work)
        print("raw baselines on the same broker and server, again", flush=True)
        monitor.phase = "baselines"
        after = await _baselines(system, run, burst_campaign, max(options.orders, 5000))
        record["baselines"] = mean_baselines(before, after)
    record["samples"] = monitor.samples
    record["peak_rss_bytes"] = monitor.peak_rss
    base = record["baselines"]
    ceiling = Ceiling(
        kafka_msgs_per_s=base["kafka_msgs_per_s"],
        pg_commits_per_s=base["pg_commits_per_s_8"],
        hops_per_order=record["burst"]["kafka_messages_per_order"],
    )
    record["ceiling"] = {
        "hops_per_order": ceiling.hops_per_order,
        "kafka_orders_per_s": ceiling.kafka_orders_per_s,
        "pg_orders_per_s": ceiling.pg_orders_per_s,
        "orders_per_s": ceiling.orders_per_s,
        "bound_by": ceiling.bound_by,
    }
    record["ratios"] = ratio_table(record["burst"]["orders_per_s"], ceiling)
    if system.owned:
        record["sinks"] = {
            "emails": sum(1 for _ in (system.config.var_dir / "mail").glob("*.eml")),
            "messages": sum(1 for _ in (system.config.var_dir / "messages").glob("*.json")),
        }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000, help="allocations in the burst (default 20000)")
    parser.add_argument("--rate", type=float, default=100.0, help="steady-rate orders/s (default 100)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="steady-rate seconds (default 60; 0: skip)"
    )
    parser.add_argument(
        "--csv", type=int, default=100_000, dest="csv_rows", help="CSV rows (default 100000; 0: skip)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 500 orders, 50/s for 10 s, 2000-row CSV"
    )
    parser.add_argument(
        "--use-running",
        action="store_true",
        help="drive the system `orchard up` runs (ORCHARD_VAR_DIR, KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL)"
        " instead of starting one",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy every service during the burst")
    parser.add_argument("--json", type=Path, help="where to write the JSON record (default bench/results/)")
    args = parser.parse_args()
    if args.quick:
        args.orders, args.rate, args.duration, args.csv_rows = 500, 50.0, 10.0, 2000
    if args.orders < 1 or args.rate <= 0 or args.duration < 0 or args.csv_rows < 0:
        parser.error("--orders ≥ 1, --rate > 0, --duration ≥ 0 and --csv ≥ 0")
    options = Options(
        orders=args.orders,
        rate=args.rate,
        duration=args.duration,
        csv_rows=args.csv_rows,
        warm_up=min(200, max(20, args.orders // 20)),
        profile=args.profile,
    )
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    started_at = datetime.now(UTC)
    stem = f"pipeline-{started_at:%Y%m%dT%H%M%SZ}"
    json_path = args.json or RESULTS_DIR / f"{stem}.json"
    profile_dir = json_path.with_name(json_path.stem + "-profile") if args.profile else None
    with tempfile.TemporaryDirectory(prefix="orchard-bench-csv-") as work:
        if args.use_running:
            system = running_system()
            print(f"driving the running system under {system.config.var_dir} (its settings unchanged)")
            record = asyncio.run(run(system, options, Path(work), profile_dir))
        else:
            print("starting a system of its own on free ports (stopped and removed at the end)")
            with own_system() as system:
                print("  with " + " ".join(f"{k}={v}" for k, v in system.env.items()), flush=True)
                record = asyncio.run(run(system, options, Path(work), profile_dir))
    record |= {
        "started_at": started_at.isoformat(),
        "options": asdict(options),
        "mix": f"{100 - 100 // SMS_EVERY}% e-mail, {100 // SMS_EVERY}% SMS",
        "system": "own (orchard up on free ports)" if not args.use_running else "running (--use-running)",
        "system_env": dict(system.env),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "os": platform.platform(),
            "load_average_end": os.getloadavg(),
        },
        "topics": [t.name for t in TOPICS],
    }
    print()
    print(render(record))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    png = json_path.with_suffix(".png")
    try:
        write_plot(record, png)
    except ImportError:
        print(f"\nwritten to {json_path}; no plot: matplotlib is missing (pip install -e '.[dev]')")
    else:
        print(f"\nwritten to {json_path} and {png}")


if __name__ == "__main__":
    main()

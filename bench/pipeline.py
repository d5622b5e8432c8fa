"""`python -m bench.pipeline` (`make bench`): the whole system, from Kafka in to delivered out.

Phases, in one run against one system: a warm-up; a burst of N allocations on `ipa.record_submitted`
(orders/s end to end, latency submission → completed, lag per consumer group, CPU and RSS per process);
one steady phase per `--rate` (latency under load, its drift, CPU per order); a big IPA CSV through the
order API (upload → validated → accepted → delivered); and the raw baselines (aiokafka produce+consume,
asyncpg single-row INSERT transactions) on the same broker and database, with the ratios. See
bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from contracts.registry import TOPICS
from deploy.infra.postgres import provision_database

from . import baselines, pipeline_profile
from .infra import Infra
from .measure import add_json_option, quiet_logs
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
from .pipeline_stats import (
    Ceiling,
    costliest,
    cpu_totals,
    latency_summary,
    messages_per_order,
    parse_rates,
    ratio_table,
    steady_latency,
)
from .pipeline_system import System, own_system, running_system

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Options:
    orders: int
    rates: tuple[float, ...]
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


def cpu_figures(before: dict[str, float], after: dict[str, float], orders: int) -> dict[str, Any]:
    """CPU seconds per process between two readings, per order, and the per-order sums by kind of process
    (Orchard's services with Kafka and PostgreSQL; the local sinks apart)."""
    cpu = {name: round(after[name] - before.get(name, 0.0), 2) for name in after}
    per_order = {name: 1000 * seconds / orders for name, seconds in cpu.items()}
    return {"cpu_s": cpu, "cpu_ms_per_order": per_order, "cpu_ms_per_order_totals": cpu_totals(per_order)}


def _profile_figures(profiles: dict[str, dict[str, Path]], cpu_s: dict[str, float]) -> dict[str, Any]:
    """The hot spots of every profiled process and the flame graphs of the three that used the most CPU."""
    graphs = {name: files["flamegraph"] for name, files in profiles.items() if "flamegraph" in files}
    return {
        "profiles": {name: str(files["raw"]) for name, files in profiles.items() if "raw" in files},
        "hot_spots": {
            name: pipeline_profile.hot_spots(files["raw"].read_text())
            for name, files in profiles.items()
            if "raw" in files
        },
        "flame_graphs": {name: str(graphs[name]) for name in costliest(cpu_s, graphs)},
    }


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
        cpu = cpu_figures(cpu_before, monitor.cpu(), n)
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
        **cpu,
        **_profile_figures(profiles, cpu["cpu_s"]),
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
        cpu_before = monitor.cpu()
        monitor.phase = f"steady {rate:g}/s"
        sent = await send_steady(producer, messages, rate)
        last = await tracker.wait_for(list(sent), what=f"steady rate {rate:g}/s")
        cpu = cpu_figures(cpu_before, monitor.cpu(), n)
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
        "latency_drift": steady_latency(sent, {r: tracker.completed[r] for r in sent}),
        **cpu,
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


def steady_orders(rate: float, duration: float) -> int:
    """Orders a steady phase sends: `rate` a second for `duration` seconds (none when the duration is 0)."""
    return max(1, round(rate * duration)) if duration > 0 else 0


@dataclass(frozen=True)
class Campaigns:
    burst: str
    steady: tuple[str, ...]
    """One per steady rate, in `--rate` order: each phase's orders are its own."""
    csv: str


async def _campaigns(system: System, tracker: Tracker, options: Options) -> Campaigns:
    print("setting up campaigns and codes (not timed)", flush=True)
    burst = await create_campaign(system.urls, "burst", codes=options.orders + options.warm_up)
    steady = []
    for rate in options.rates:
        if n := steady_orders(rate, options.duration):
            steady.append(await create_campaign(system.urls, f"steady-{rate:g}", codes=n))
    csv = await create_campaign(system.urls, "csv", codes=options.csv_rows) if options.csv_rows else ""
    tracker.campaigns |= {c for c in (burst, *steady, csv) if c}
    return Campaigns(burst, tuple(steady), csv)


async def _warm_up(
    system: System, monitor: Monitor, tracker: Tracker, campaign_id: str, run: str, n: int
) -> None:
    print(f"warm-up: {n} orders (not recorded)", flush=True)
    monitor.phase = "warm-up"
    producer = hris_producer(system.bootstrap)
    await producer.start()
    try:
        warm = await send_burst(producer, submitted_messages(f"w{run}", campaign_id, 0, n))
    finally:
        await producer.stop()
    await tracker.wait_for(list(warm), what="warm-up")


async def _phases(
    system: System, monitor: Monitor, tracker: Tracker, options: Options, work: Path, profile_dir: Path | None
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    campaigns = await _campaigns(system, tracker, options)
    # Baselines before and after the pipeline: on a shared machine each moves with whatever else runs,
    # so the ceiling takes their mean and the report shows both.
    print("raw baselines on the same broker and server", flush=True)
    monitor.phase = "baselines"
    before = await _baselines(system, run, campaigns.burst, max(options.orders, 5000))
    await _warm_up(system, monitor, tracker, campaigns.burst, run, options.warm_up)
    print(f"burst: {options.orders} orders", flush=True)
    record: dict[str, Any] = {
        "burst": await _burst(system, monitor, tracker, campaigns.burst, run, options.orders, profile_dir),
        "steady": [],
    }
    for i, (rate, campaign_id) in enumerate(zip(options.rates, campaigns.steady, strict=False)):
        print(f"steady: {rate:g} orders/s for {options.duration:g} s", flush=True)
        await asyncio.sleep(2)  # the previous phase's relays and commits settle before the clock starts
        record["steady"].append(
            await _steady(system, monitor, tracker, campaign_id, f"{run}{i}", rate, options.duration)
        )
    if options.csv_rows:
        print(f"CSV: {options.csv_rows} rows through POST /v1/ipa/batches", flush=True)
        await asyncio.sleep(2)
        record["csv"] = await _csv(system, monitor, campaigns.csv, run, options.csv_rows, work)
    print("raw baselines on the same broker and server, again", flush=True)
    monitor.phase = "baselines"
    after = await _baselines(system, run, campaigns.burst, max(options.orders, 5000))
    record["baselines"] = mean_baselines(before, after)
    return record


def _ceiling_figures(record: dict[str, Any]) -> dict[str, Any]:
    base = record["baselines"]
    ceiling = Ceiling(
        kafka_msgs_per_s=base["kafka_msgs_per_s"],
        pg_commits_per_s=base["pg_commits_per_s_8"],
        hops_per_order=record["burst"]["kafka_messages_per_order"],
    )
    return {
        "ceiling": {
            "hops_per_order": ceiling.hops_per_order,
            "kafka_orders_per_s": ceiling.kafka_orders_per_s,
            "pg_orders_per_s": ceiling.pg_orders_per_s,
            "orders_per_s": ceiling.orders_per_s,
            "bound_by": ceiling.bound_by,
        },
        "ratios": ratio_table(record["burst"]["orders_per_s"], ceiling),
    }


async def run(system: System, options: Options, work: Path, profile_dir: Path | None) -> dict[str, Any]:
    tracker = Tracker(system.bootstrap)
    monitor = Monitor(
        system.bootstrap,
        system.pids() | system.infra_pids(),
        completed=lambda: len(tracker.completed),
        in_flight=tracker.in_flight,
    )
    async with monitor.running(), tracker.running():
        record = await _phases(system, monitor, tracker, options, work, profile_dir)
    record["samples"] = monitor.samples
    record["peak_rss_bytes"] = monitor.peak_rss
    record["final_rss_bytes"] = monitor.final_rss
    record |= _ceiling_figures(record)
    if system.owned:
        record["sinks"] = {
            "emails": sum(1 for _ in (system.config.var_dir / "mail").glob("*.eml")),
            "messages": sum(1 for _ in (system.config.var_dir / "messages").glob("*.json")),
        }
    return record


def _rates(text: str) -> list[float]:
    try:
        return parse_rates(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000, help="allocations in the burst (default 20000)")
    parser.add_argument(
        "--rate",
        type=_rates,
        default=[100.0, 300.0],
        help="steady rates in orders/s, comma-separated, one phase each (default 100,300)",
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of each steady phase (default 60; 0: skip)"
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
    add_json_option(parser)
    args = parser.parse_args()
    if args.quick:
        args.orders, args.rate, args.duration, args.csv_rows = 500, [50.0], 10.0, 2000
    if args.orders < 1 or args.duration < 0 or args.csv_rows < 0:
        parser.error("--orders ≥ 1, --duration ≥ 0 and --csv ≥ 0")
    return args


def _write(record: dict[str, Any], json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    png = json_path.with_suffix(".png")
    try:
        write_plot(record, png)
    except ImportError:
        print(f"\nwritten to {json_path}; no plot: matplotlib is missing (pip install -e '.[dev]')")
    else:
        print(f"\nwritten to {json_path} and {png}")


def main() -> None:
    args = _arguments()
    options = Options(
        orders=args.orders,
        rates=tuple(args.rate),
        duration=args.duration,
        csv_rows=args.csv_rows,
        warm_up=min(200, max(20, args.orders // 20)),
        profile=args.profile,
    )
    quiet_logs(kafka_client_errors_only=True)

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
    _write(record, json_path)


if __name__ == "__main__":
    main()

"""`python -m bench.kafka_restart [--messages N] [--runs R] [--cpu-burn K]`: how long a broker killed with
-9 under load takes until it accepts produce and consume again, and where the time went.

Each run starts a fresh broker (the deploy.infra.kafka API the tests use), creates the registry's topics,
loads it the way the system does — the relay's transactional producers sending ~600-byte records across
every topic while consumer groups commit offsets — SIGKILLs it mid-load, launches it again on the same
data and times three marks: the broker answering metadata (unfenced), a produce with acks=all, and
every load group's offset commit (each needs its __consumer_offsets partition loaded). The broker's own
log of the restart is then summarised: logs recovered, segments rescanned, offsets loading.
`--cpu-burn K` adds K busy processes during the restart, as other work on a shared machine would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from deploy.infra import kafka
from deploy.infra.kafka import KafkaBroker
from deploy.infra.topics import ensure_kafka_topics
from deploy.runner import registry_topics
from deploy.testing import start_kafka

RESTART_TIMEOUT_S = 600.0
TXN_SIZE = 200
COMMIT_EVERY_S = 0.05


@dataclass
class RunResult:
    messages: int
    data_mb: float
    ready_s: float = 0.0
    produce_s: float = 0.0
    consume_s: float = 0.0
    log_phases: dict[str, float | int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- the load


async def _transactions(bootstrap: str, name: str, topics: list[str], quota: int, sent: list[int]) -> None:
    """One relay-like transactional producer sending `quota` records, then going on until cancelled."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=name, enable_idempotence=True, acks="all",
        linger_ms=5, max_batch_size=256 * 1024, request_timeout_ms=15_000,
    )  # fmt: skip
    await producer.start()
    payload = os.urandom(300).hex().encode()  # 600 bytes that do not compress to nothing
    try:
        while True:
            async with producer.transaction():
                for _ in range(TXN_SIZE):
                    key = str(random.randrange(1_000_000)).encode()
                    await producer.send(random.choice(topics), payload, key=key)
            sent[0] += TXN_SIZE
            if sent[0] >= quota:
                await asyncio.sleep(0.01)  # past the quota: a trickle until the kill
    finally:
        with suppress(Exception):
            await asyncio.wait_for(producer.stop(), 2)


async def _committer(bootstrap: str, group: str, partitions: list[TopicPartition]) -> None:
    """A consumer group committing ever higher offsets, as the services' batch consumers do."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    consumer.assign(partitions)
    offset = 0
    try:
        while True:
            offset += random.randrange(1, 50)
            await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp in partitions})
            await asyncio.sleep(COMMIT_EVERY_S)
    finally:
        with suppress(Exception):
            await asyncio.wait_for(consumer.stop(), 2)


def _load_groups(count: int) -> dict[str, list[TopicPartition]]:
    topics = [topic for topic in registry_topics() if not topic.name.endswith(".dlq")]
    return {
        f"bench-restart-{n}": [
            TopicPartition(t.name, p) for t in topics[n % len(topics) :][:2] for p in range(3)
        ]
        for n in range(count)
    }


async def load_and_kill(broker: KafkaBroker, messages: int, groups: int) -> None:
    """Send `messages` records with two transactional producers and `groups` committing groups, then
    SIGKILL the broker while all of them are still at it."""
    topics = [topic.name for topic in registry_topics() if not topic.name.endswith(".dlq")]
    sent = [0]
    tasks = [
        asyncio.create_task(
            _transactions(broker.bootstrap_servers, f"bench-relay-{n}", topics, messages, sent)
        )
        for n in range(2)
    ]
    tasks += [
        asyncio.create_task(_committer(broker.bootstrap_servers, group, partitions))
        for group, partitions in _load_groups(groups).items()
    ]
    began = time.monotonic()
    while sent[0] < messages:
        await asyncio.sleep(0.2)
        if any(task.done() for task in tasks):
            for task in tasks:
                if task.done():
                    task.result()
    print(f"  loaded {sent[0]} records in {time.monotonic() - began:.0f}s; SIGKILL")
    await asyncio.to_thread(broker.kill)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ------------------------------------------------------------------------------------------ the restart


async def _until(what: str, attempt_once: Callable[[], Awaitable[None]], began: float) -> float:
    """Retry the coroutine function `attempt_once` until it succeeds; seconds since `began`."""
    last: BaseException | None = None
    while time.monotonic() - began < RESTART_TIMEOUT_S:
        try:
            await attempt_once()
            return time.monotonic() - began
        except Exception as error:  # every failure here means "not yet"
            last = error
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} not possible within {RESTART_TIMEOUT_S:.0f}s: {last!r}")


async def _produce_once(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                request_timeout_ms=5000)  # fmt: skip
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"after the restart", key=b"k"), 10)
    finally:
        await producer.stop()


async def _commit_everywhere(bootstrap: str, groups: dict[str, list[TopicPartition]]) -> None:
    """One consume-side commit per load group: each waits for its __consumer_offsets partition."""
    for group, partitions in groups.items():
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                    request_timeout_ms=5000)  # fmt: skip
        await consumer.start()
        try:
            consumer.assign(partitions[:1])
            await consumer.seek_to_end(partitions[0])
            await asyncio.wait_for(consumer.getmany(timeout_ms=100), 10)
            await asyncio.wait_for(consumer.commit(), 10)
        finally:
            await consumer.stop()


async def restart_and_time(broker: KafkaBroker, groups: int, result: RunResult) -> None:
    topic = next(topic.name for topic in registry_topics() if not topic.name.endswith(".dlq"))
    log_offset = broker.log_file.stat().st_size
    launched_at = datetime.now()
    began = time.monotonic()
    broker.launch()
    await asyncio.to_thread(
        broker.wait_ready, RESTART_TIMEOUT_S, lambda line: print(f"    kafka: {line}"), 5.0
    )
    result.ready_s = time.monotonic() - began
    result.produce_s = await _until("produce", lambda: _produce_once(broker.bootstrap_servers, topic), began)
    committing = _load_groups(groups)
    result.consume_s = await _until(
        "consume", lambda: _commit_everywhere(broker.bootstrap_servers, committing), began
    )
    result.log_phases = log_phases(broker.log_file, log_offset, launched_at)


# ------------------------------------------------------------------------------------- the broker's log

_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
_PHASES = {
    "jvm_up_s": "Registered `kafka:type=kafka.Log4jController` MBean",
    "broker_starting_s": "Transition from SHUTDOWN to STARTING",
    "logs_loading_s": "Loading logs from log dirs",
    "logs_loaded_s": "logs in",
    "registered_s": "Successfully registered broker",
    "unfenced_s": "Transitioning from RECOVERY to RUNNING",
}
_OFFSETS_LOADED = re.compile(
    r"Finished loading of metadata from __consumer_offsets-\d+ .* Loaded (\d+) records"
)


def log_phases(path: Path, offset: int, launched_at: datetime) -> dict[str, float | int]:
    """Seconds from the launch to each startup milestone in the broker's log, and what was redone."""
    with path.open("rb") as file:
        file.seek(offset)
        lines = file.read().decode(errors="replace").splitlines()
    phases: dict[str, float | int] = {"segments_rescanned": 0, "offsets_records_loaded": 0}
    for line in lines:
        stamp = _STAMP.match(line)
        if stamp is None:
            continue
        at = (datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f") - launched_at).total_seconds()
        for name, marker in _PHASES.items():
            if name not in phases and marker in line and (name != "logs_loaded_s" or "Loaded " in line):
                phases[name] = round(at, 1)
        if "Recovering unflushed segment" in line:
            phases["segments_rescanned"] = int(phases["segments_rescanned"]) + 1
        if loaded := _OFFSETS_LOADED.search(line):
            phases["offsets_loaded_s"] = round(at, 1)
            phases["offsets_records_loaded"] = int(phases["offsets_records_loaded"]) + int(loaded.group(1))
    return phases


def _data_mb(broker: KafkaBroker) -> float:
    return sum(path.stat().st_size for path in broker.data_dir.rglob("*.log")) / 1e6


# ----------------------------------------------------------------------------------------------- a run


def _burn() -> None:
    while True:
        pass


@contextmanager
def cpu_burn(processes: int) -> Iterator[None]:
    """`processes` busy loops for the duration, as other engineers' work on a shared machine would be."""
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(processes)]
    for burner in burners:
        burner.start()
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.join()


async def one_run(base_dir: Path, args: argparse.Namespace) -> RunResult:
    broker = start_kafka(base_dir)
    try:
        await ensure_kafka_topics(broker.bootstrap_servers, registry_topics())
        await load_and_kill(broker, args.messages, args.groups)
        result = RunResult(messages=args.messages, data_mb=round(_data_mb(broker), 1))
        with cpu_burn(args.cpu_burn):
            await restart_and_time(broker, args.groups, result)
        return result
    finally:
        broker.kill()


def _print_run(result: RunResult) -> None:
    print(
        f"  ready {result.ready_s:5.1f}s  produce {result.produce_s:5.1f}s  consume+commit "
        f"{result.consume_s:5.1f}s  ({result.data_mb} MB on disk)"
    )
    print("  log: " + "  ".join(f"{name}={value}" for name, value in result.log_phases.items()))


def _summary(results: list[RunResult]) -> dict[str, float]:
    consume = [result.consume_s for result in results]
    return {"median_s": round(statistics.median(consume), 1), "worst_s": round(max(consume), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000, help="records sent before the kill")
    parser.add_argument("--groups", type=int, default=35, help="consumer groups committing offsets")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu-burn", type=int, default=0, help="busy processes during the restart")
    parser.add_argument("--json", type=Path, help="append every run and the summary to this file")
    parser.add_argument(
        "--server-properties", type=Path, help="a broker config template to compare (default: ours)"
    )
    args = parser.parse_args()
    if args.server_properties:
        kafka.SERVER_PROPERTIES_TEMPLATE = args.server_properties.resolve()
    # The load's clients lose their broker on purpose; their complaints (and asyncio's) are noise.
    for noisy in ("aiokafka", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    results: list[RunResult] = []
    for run in range(1, args.runs + 1):
        print(f"run {run}/{args.runs} (load average {os.getloadavg()[0]:.1f})")
        base_dir = Path(tempfile.mkdtemp(prefix="orchard-kafka-restart-"))
        try:
            results.append(asyncio.run(one_run(base_dir, args)))
        finally:
            shutil.rmtree(base_dir, ignore_errors=True)
        _print_run(results[-1])
    summary = _summary(results)
    print(
        f"until produce + consume after kill -9: median {summary['median_s']}s, worst {summary['worst_s']}s"
    )
    if args.json:
        record = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": [asdict(r) for r in results]}
        with args.json.open("a") as out:
            out.write(json.dumps({**record, **summary}) + "\n")


if __name__ == "__main__":
    main()

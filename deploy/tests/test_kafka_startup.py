"""Waiting for a broker that recovers its logs after a kill -9: progress read from its server.log keeps
the wait going and is reported; a broker whose log stops moving still times out. No JVM is started:
the broker's readiness is faked and its log is written by the test, in Kafka 4.x's own wording."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from deploy.infra.errors import InfraError
from deploy.infra.kafka import KafkaBroker, StartupProgress

JVM_START = (
    "[2026-01-01 10:00:00,000] INFO Registered `kafka:type=kafka.Log4jController` MBean (kafka.utils.X)"
)
UNCLEAN = (
    "[2026-01-01 10:00:01,000] INFO Recovering 10 logs from /d since no clean shutdown file was found (x)"
)
LOADING = "[2026-01-01 10:00:01,000] INFO Loading logs from log dirs ArrayBuffer(/d) (kafka.log.LogManager)"


def _loaded(done: int, total: int = 10) -> str:
    return (
        f"[2026-01-01 10:00:02,000] INFO Completed load of Log(dir=/d/t-{done}, topic=t, partition={done}) "
        f"with 1 segments, local-log-start-offset 0 and log-end-offset 9 in 5ms ({done}/{total} completed "
        "in /d) (kafka.log.LogManager)"
    )


def _broker(tmp_path: Path, ready: threading.Event) -> KafkaBroker:
    broker = KafkaBroker(tmp_path, port=1, controller_port=2)
    broker.logs_dir.mkdir(parents=True)
    broker.log_file.write_text("[2026-01-01 09:00:00,000] INFO an earlier run, already over (x)\n")
    broker.is_ready = ready.is_set  # type: ignore[method-assign]
    broker.is_running = lambda: True  # type: ignore[method-assign]
    return broker


def _write_slowly(broker: KafkaBroker, lines: list[str], every: float, then: threading.Event | None) -> None:
    def write() -> None:
        for line in lines:
            with broker.log_file.open("a") as log:
                log.write(line + "\n")
            time.sleep(every)
        if then is not None:
            then.set()

    threading.Thread(target=write, daemon=True).start()


def test_the_phase_follows_interleaved_log_loading_and_registration() -> None:
    progress = StartupProgress()
    for line in (JVM_START, UNCLEAN, LOADING, "INFO Successfully registered broker 1 with broker epoch 5"):
        progress.apply(line)
    progress.apply(_loaded(4))

    # Registration finished before the logs did: the broker is still recovering.
    assert progress.unclean
    assert progress.line() == "recovering logs — 4/10 partitions"

    progress.apply(
        "INFO Loaded 10 logs in 2529ms (unclean log dirs = ArrayBuffer(/d)) (kafka.log.LogManager)"
    )
    progress.apply("INFO The broker has caught up. Transitioning from STARTING to RECOVERY.")
    assert progress.line() == "waiting to be unfenced"


def test_a_recovering_broker_is_waited_for_past_the_timeout_and_its_progress_reported(tmp_path: Path) -> None:
    ready = threading.Event()
    broker = _broker(tmp_path, ready)
    reports: list[str] = []
    _write_slowly(broker, [JVM_START, UNCLEAN, LOADING, *(_loaded(n) for n in range(1, 11))], 0.15, ready)

    began = time.monotonic()
    broker.wait_ready(timeout=0.6, on_progress=reports.append, report_every=0.3)

    assert time.monotonic() - began > 1.2  # twice the timeout: progress kept it waiting
    assert any(report.startswith("recovering logs — ") and " partitions, " in report for report in reports)
    assert not any("earlier run" in report for report in reports)


def test_a_broker_whose_log_stops_moving_times_out_naming_the_last_phase(tmp_path: Path) -> None:
    broker = _broker(tmp_path, threading.Event())
    _write_slowly(broker, [JVM_START, UNCLEAN, LOADING, _loaded(3)], 0.05, None)

    with pytest.raises(
        InfraError, match=r"made no progress for 1s \(last: recovering logs — 3/10 partitions\)"
    ):
        broker.wait_ready(timeout=0.8)


def test_a_clean_start_prints_nothing(tmp_path: Path) -> None:
    ready = threading.Event()
    broker = _broker(tmp_path, ready)
    reports: list[str] = []
    _write_slowly(broker, [JVM_START, LOADING, _loaded(1, 1)], 0.05, ready)

    broker.wait_ready(timeout=5, on_progress=reports.append)

    assert reports == []

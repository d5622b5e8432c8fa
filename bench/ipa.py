"""`python -m bench.ipa [--rows N] [--json PATH]`: validate and accept a big IPA CSV through the running
order service, with its peak memory, next to a raw Postgres COPY of the same rows measured in the same run.

The order service runs as its own process (`python -m services.order`) on a fresh schema; the CSV is
made before any clock starts. Measured:
- upload: first byte sent → 202 (the file streamed into `ipa_batch_rows`);
- validated: → the batch's `validated` count reaches the row count (every row judged, errors.csv
  complete; acceptance follows);
- accepted: first byte sent → the batch `completed` (every row validated, every order, timeline row and
  outbox event committed);
- published: → every outbox event acknowledged by Kafka (the relay's drain, for context);
- the service's RSS before, and its peak while doing it (sampled every 20 ms);
- the service process's CPU seconds: on a shared machine wall-clock times move with everything else
  running, CPU seconds per row much less.
Baseline: asyncpg `copy_to_table` of the same CSV bytes into a table of the same columns, one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from chassis.auth import issue_token
from chassis.settings import Settings
from chassis.testing import produce
from contracts.envelope import Envelope
from contracts.registry import TOPICS
from contracts.topics import Topics
from contracts.values import Channel, RewardType
from contracts.vouchers import CampaignChanged, CampaignStatus
from deploy.infra.net import free_port
from deploy.infra.topics import ensure_topics
from deploy.testing import drop_service_db, new_service_db

from .infra import Infra, open_infra, scratch_pool
from .measure import add_json_option, quiet_logs, save_record

REPO = Path(__file__).resolve().parent.parent
COLUMNS = (
    "external_ref",
    "member_id",
    "name",
    "email",
    "campaign_id",
    "reward_type",
    "amount",
    "currency",
    "reason",
)
STALL_TIMEOUT_S = 1800


def write_csv(path: Path, rows: int, campaign_id: str) -> None:
    run = uuid.uuid4().hex[:8]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(rows):
            writer.writerow(
                (
                    f"bench-{run}-{i}",
                    f"member-{i % 5000}",
                    f"Member {i}",
                    f"member{i}@example.com",
                    campaign_id,
                    "voucher",
                    "25.00",
                    "EUR",
                    "Q4 award",
                )
            )


class PeakRss:
    """Samples a process's RSS in a thread, so the sampling never waits on our event loop."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval_s
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def copy_baseline(infra: Infra, csv_path: Path) -> float:
    async with scratch_pool(infra.admin_dsn, size=1) as (_, pool):
        await pool.execute("CREATE TABLE raw_ipa (" + ", ".join(f"{c} text" for c in COLUMNS) + ")")
        async with pool.acquire() as conn:
            started = time.monotonic()
            with csv_path.open("rb") as f:
                async with conn.transaction():
                    await conn.copy_to_table("raw_ipa", source=f, format="csv", header=True)
            seconds = time.monotonic() - started
            assert await conn.fetchval("SELECT count(*) FROM raw_ipa") > 0
    return seconds


def start_service(infra: Infra, dsn: str, schema: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ORCHARD_ENV": "dev",  # the bench runs with the development keys
        "ORCHARD_SERVICE": "order",
        "ORCHARD_HTTP_PORT": str(port),
        "DATABASE_URL": dsn,
        "ORCHARD_DB_SCHEMA": schema,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap,
        "ORCHARD_LOG_LEVEL": "WARNING",
        "ORCHARD_ORDER_IPA_APPROVAL_ROWS_ABOVE": "1000000000",  # measured: intake, not approvals
        "ORCHARD_ORDER_IPA_APPROVAL_TOTAL_ABOVE": "1000000000000",
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.order"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )


async def wait_ready(client: httpx.AsyncClient, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the order service exited; see {log_path}:\n{log_path.read_text()[-3000:]}")
        try:
            if (await client.get("/health/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the order service never became ready")


async def measure(infra: Infra, rows: int, work: Path) -> dict[str, Any]:
    await ensure_topics(infra.bootstrap, TOPICS)
    db = await new_service_db(infra.admin_dsn, prefix="bench_order")
    campaign_id = f"bench-{uuid.uuid4().hex[:8]}"
    csv_path = work / "ipa.csv"
    write_csv(csv_path, rows, campaign_id)
    size = csv_path.stat().st_size
    baseline_s = await copy_baseline(infra, csv_path)
    port = free_port()
    log_path = work / "order.log"
    process = start_service(infra, db.dsn, db.schema, port, log_path)
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": f'"{db.schema}"'})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            await wait_ready(client, process, log_path)
            campaign = CampaignChanged(
                campaign_id=campaign_id,
                version=1,
                name="bench",
                reward_type=RewardType.VOUCHER,
                face_value=Decimal("25"),
                currency="EUR",
                status=CampaignStatus.ACTIVE,
                default_channel=Channel.EMAIL,
            )
            envelope = Envelope.new(event_type=Topics.CAMPAIGN_CHANGED, producer="bench", data=campaign)
            await produce(
                infra.bootstrap, Topics.CAMPAIGN_CHANGED, [(campaign_id.encode(), envelope.to_bytes())]
            )
            while not await conn.fetchval(  # noqa: ASYNC110 - polling another process's database
                "SELECT 1 FROM campaigns WHERE campaign_id = $1", campaign_id
            ):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1)  # let start-up settle before the idle reading
            service = psutil.Process(process.pid)
            idle_rss = service.memory_info().rss
            cpu_before = sum(service.cpu_times()[:2])
            token = issue_token(role="admin", sub="bench", settings=Settings())

            async def body() -> Any:
                with csv_path.open("rb") as f:
                    while chunk := f.read(256 * 1024):
                        yield chunk

            with PeakRss(process.pid) as rss:
                started = time.monotonic()
                response = await client.post(
                    "/v1/ipa/batches",
                    content=body(),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
                )
                uploaded = time.monotonic()
                if response.status_code != 202:
                    raise RuntimeError(f"upload refused: {response.status_code} {response.text}")
                batch_id = response.json()["batch_id"]
                deadline = started + STALL_TIMEOUT_S
                validated: float | None = None
                while True:
                    batch = (
                        await client.get(
                            f"/v1/ipa/batches/{batch_id}", headers={"Authorization": f"Bearer {token}"}
                        )
                    ).json()
                    if validated is None and batch["validated"] >= rows:
                        validated = time.monotonic()
                    if batch["status"] in ("completed", "rejected", "failed"):
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"benchmark stalled: {batch}")
                    await asyncio.sleep(0.05)
                accepted = time.monotonic()
                cpu_accept = sum(service.cpu_times()[:2]) - cpu_before
                peak_accept = rss.peak
                while await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("benchmark stalled: the outbox never drained")
                    await asyncio.sleep(0.05)
                published = time.monotonic()
                cpu_publish = sum(service.cpu_times()[:2]) - cpu_before
            events = await conn.fetchval("SELECT count(*) FROM outbox")
        if batch["status"] != "completed" or batch["accepted"] != rows:
            raise RuntimeError(f"the batch did not accept every row: {batch}")
        return {
            "rows": rows,
            "csv_bytes": size,
            "events": events,
            "upload_s": uploaded - started,
            "validate_s": (validated or accepted) - started,
            "accept_s": accepted - started,
            "publish_s": published - started,
            "copy_baseline_s": baseline_s,
            "service_cpu_accept_s": cpu_accept,
            "service_cpu_publish_s": cpu_publish,
            "load_average": os.getloadavg(),
            "idle_rss_bytes": idle_rss,
            "peak_rss_accept_bytes": peak_accept,
            "peak_rss_bytes": rss.peak,
        }
    finally:
        await conn.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        await drop_service_db(db)


def render(r: dict[str, Any]) -> str:
    mib = 2**20
    rows = r["rows"]

    def line(label: str, seconds: float) -> str:
        return f"{label:58} {seconds:8.2f} {rows / seconds:9.0f}"

    return "\n".join(
        [
            f"Orchard IPA bench: {rows} rows, {r['csv_bytes'] / mib:.1f} MiB CSV, {os.cpu_count()} CPUs",
            "",
            f"{'measure':58} {'seconds':>8} {'rows/s':>9}",
            line("raw Postgres COPY of the same CSV (baseline)", r["copy_baseline_s"]),
            line("order service: upload streamed and stored (202)", r["upload_s"]),
            line("order service: every row validated (errors.csv complete)", r["validate_s"]),
            line("order service: validated and accepted (batch completed)", r["accept_s"]),
            line(f"  + every outbox event acked by Kafka ({r['events']} events)", r["publish_s"]),
            "",
            f"ratio validate / COPY: {r['validate_s'] / r['copy_baseline_s']:.1f}x;"
            f" accept / COPY: {r['accept_s'] / r['copy_baseline_s']:.1f}x"
            f"   (COPY / accept throughput: {r['copy_baseline_s'] / r['accept_s']:.3f})",
            f"order service CPU (user+sys): {r['service_cpu_accept_s']:.1f} s until accepted"
            f" ({r['service_cpu_accept_s'] / rows * 1000:.2f} ms/row),"
            f" {r['service_cpu_publish_s']:.1f} s until published; load average {r['load_average'][0]:.1f}",
            f"order service RSS: idle {r['idle_rss_bytes'] / mib:.0f} MiB,"
            f" peak while accepting {r['peak_rss_accept_bytes'] / mib:.0f} MiB,"
            f" peak until published {r['peak_rss_bytes'] / mib:.0f} MiB",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ipa", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="CSV rows (default 100000)")
    add_json_option(parser)
    args = parser.parse_args()
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    quiet_logs()
    started_at = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="orchard-bench-ipa-") as work, open_infra() as infra:
        result = asyncio.run(measure(infra, args.rows, Path(work)))
        result["infra"] = infra.sources
    result["started_at"] = started_at.isoformat()
    print(render(result))
    save_record(result, "ipa-", started_at, args.json)


if __name__ == "__main__":
    main()

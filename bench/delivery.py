"""`python -m bench.delivery [--messages N | --quick] [--workers 1,4,16]`: sends per second through
the delivery service's queue and workers to the local SMTP sink and the fake SMS provider, next to
raw baselines (aiosmtplib and httpx sending straight to the same sinks with the same concurrency)
measured in the same run, and the ratio.

The sinks run as their own processes, as `orchard up` runs them. Postgres is `DATABASE_URL` when
set, else a durable server of our own on a free port (Kafka is not involved: sending works from the
service's tables; the events it writes wait in the outbox).

Per message our layer adds: its share of a claim (up to 20 rows and their attempt rows, one statement,
FOR UPDATE SKIP LOCKED), decrypting the code, rendering the templates, sending with no transaction
open, and one short transaction that records the outcome, its state and outbox event and starts the
next claimed attempt (one commit per message: a crash re-sends at most one message per worker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import psutil
from pydantic import SecretStr

from chassis.db import apply_migrations, create_pool
from chassis.logging import configure_logging
from chassis.settings import Settings
from contracts.values import Channel
from deploy.infra.net import free_port, port_is_open
from deploy.infra.paths import REPO_ROOT
from deploy.infra.postgres import PostgresServer, provision_database
from deploy.infra.process import kill_tree, spawn
from deploy.testing import drop_service_db, new_service_db
from services.delivery.app import MIGRATIONS, default_senders
from services.delivery.codes import CodeVault
from services.delivery.sending import DeliveryEngine
from services.delivery.settings import DeliverySettings

STALL_TIMEOUT_S = 300


@dataclass(frozen=True)
class Result:
    label: str
    channel: str
    workers: int
    messages: int
    seconds: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds spent during the run by: this process (the client or our workers), the sinks, Postgres."""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def cpu_ms(self, who: str) -> float:
        return 1000 * self.cpu_s.get(who, 0.0) / self.messages


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds of these processes and all their descendants, including exited (reaped) children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in family:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
    return total


@dataclass
class CpuMeter:
    """CPU per message is what a loaded 2-core machine still measures fairly (wall time is shared)."""

    sink_pids: list[int]
    postgres_pid: int | None

    def sample(self) -> dict[str, float]:
        me = psutil.Process().cpu_times()
        return {
            "client": me.user + me.system,
            "sinks": _cpu_of(self.sink_pids),
            "postgres": _cpu_of([self.postgres_pid]) if self.postgres_pid else 0.0,
        }

    @staticmethod
    def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: after[k] - before[k] for k in before}


METER = CpuMeter([], None)


@dataclass
class Sinks:
    smtp_port: int
    provider_url: str
    directory: Path
    pids: list[int] = field(default_factory=list)


@contextlib.contextmanager
def running_sinks(base: Path) -> Iterator[Sinks]:
    smtp_port, provider_port = free_port(), free_port()
    env = {
        **os.environ,
        "ORCHARD_ENV": "dev",  # the bench runs with the development keys
        "ORCHARD_SMTP_SINK_PORT": str(smtp_port),
        "ORCHARD_MAIL_DIR": str(base / "mail"),
        "ORCHARD_PROVIDER_PORT": str(provider_port),
        "ORCHARD_MESSAGES_DIR": str(base / "messages"),
    }
    processes = [
        spawn([sys.executable, "-m", module], log_file=base / f"{module}.log", env=env, cwd=REPO_ROOT)
        for module in ("deploy.sinks.smtp", "deploy.sinks.provider")
    ]
    try:
        deadline = time.monotonic() + 30
        while not (port_is_open(smtp_port) and port_is_open(provider_port)):
            if time.monotonic() > deadline:
                raise RuntimeError("the sinks did not start; see their logs")
            time.sleep(0.05)
        yield Sinks(smtp_port, f"http://127.0.0.1:{provider_port}", base, [p.pid for p in processes])
    finally:
        for process in processes:
            kill_tree(process.pid)


@contextlib.contextmanager
def postgres(base: Path) -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield asyncio.run(provision_database(os.environ["DATABASE_URL"], "orchard_bench"))
        return
    server = PostgresServer(base / "pg", free_port(), tie_to_parent=True)
    try:
        server.start()
        METER.postgres_pid = server.pid
        yield asyncio.run(provision_database(server.admin_dsn, "orchard_bench"))
    finally:
        server.stop()


async def _wait(count: Callable[[], Awaitable[int]], target: int) -> float:
    deadline = time.monotonic() + STALL_TIMEOUT_S
    while await count() < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"benchmark stalled before {target} messages")
        await asyncio.sleep(0.05)  # counting costs this process CPU too: not too often
    return time.monotonic()


async def _queue(pool: Any, settings: DeliverySettings, channel: Channel, count: int) -> None:
    vault = CodeVault(settings.code_key)
    expires = datetime.now(UTC) + timedelta(days=90)
    rows = []
    for n in range(count):
        order_id = uuid.uuid4()
        rows.append(
            (
                uuid.uuid4(),
                order_id,
                f"BK-{order_id.hex[:10].upper()}",
                f"m-{n}",
                channel.value,
                f"member{n}@example.com",
                f"+44770090{n % 10000:04d}",
                vault.seal(SecretStr(f"ORCH-{order_id.hex[:4].upper()}-{order_id.hex[4:8].upper()}")),
                Decimal("25.00"),
                expires,
                str(order_id),
            )
        )
    await pool.executemany(
        """
        INSERT INTO deliveries (delivery_id, order_id, booking_id, member_id, campaign_id, requested_channel,
                                channel, recipient_name, email, phone, has_request, code_id, code_ciphertext,
                                masked_code, face_value, currency, expires_at, has_voucher, status,
                                next_attempt_at, correlation_id)
        VALUES ($1, $2, $3, $4, 'bench', $5, $5, 'Bench', $6, $7, true, gen_random_uuid(), $8, '****',
                $9, 'EUR', $10, true, 'queued', now(), $11)
        """,
        rows,
    )


@contextlib.asynccontextmanager
async def _schema(admin_dsn: str, size: int) -> AsyncIterator[tuple[str, str, Any]]:
    db = await new_service_db(admin_dsn, prefix="bench_delivery")
    pool = await create_pool(db.dsn, schema=db.schema, min_size=2, max_size=size)
    try:
        await apply_migrations(pool, service_dir=MIGRATIONS)
        yield db.dsn, db.schema, pool
    finally:
        await pool.close()
        await drop_service_db(db)


async def ours(admin_dsn: str, sinks: Sinks, channel: Channel, workers: int, count: int) -> Result:
    values: dict[str, Any] = {
        "ORCHARD_DELIVERY_SMTP_PORT": sinks.smtp_port,
        "ORCHARD_DELIVERY_SMS_BASE_URL": sinks.provider_url,
        f"ORCHARD_{channel.value.upper()}_WORKERS": workers,
        f"ORCHARD_{channel.value.upper()}_RATE": 1_000_000,
        **{f"ORCHARD_{c.value.upper()}_WORKERS": 0 for c in Channel if c is not channel},
    }
    settings = DeliverySettings(**values)
    async with _schema(admin_dsn, workers * 2 + 4) as (dsn, schema, pool):
        await _queue(pool, settings, channel, count)
        engine = DeliveryEngine(settings, default_senders(settings))
        cpu = METER.sample()
        began = time.monotonic()
        await engine.start(pool, dsn, schema)
        try:
            ended = await _wait(
                lambda: pool.fetchval("SELECT count(*) FROM deliveries WHERE status IN ('sent', 'failed')"),
                count,
            )
            spent = METER.spent(cpu, METER.sample())
        finally:
            await engine.stop()
        failed = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'failed'")
        if failed:
            raise RuntimeError(f"{failed} deliveries failed during the benchmark")
    return Result("delivery service", channel.value, workers, count, ended - began, spent)


def _raw_email() -> bytes:
    message = EmailMessage()
    message["From"] = "Orchard Rewards <rewards@orchard.local>"
    message["To"] = "member@example.com"
    message["Subject"] = "Your 25.00 EUR reward is here"
    message["Message-ID"] = "<raw-MESSAGEID@bench>"
    message.set_content("Your voucher code: ORCH-1234-5678\n")
    message.add_alternative("<p>Your voucher code: <code>ORCH-1234-5678</code></p>", subtype="html")
    return message.as_bytes(policy=SMTP_POLICY)


async def _concurrently(workers: int, count: int, send_one: Callable[[int], Awaitable[None]]) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def worker() -> None:
        while True:
            try:
                n = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await send_one(n)

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return time.monotonic() - began


async def _measured(
    label: str, channel: str, workers: int, count: int, send_one: Callable[[int], Awaitable[None]]
) -> Result:
    cpu = METER.sample()
    seconds = await _concurrently(workers, count, send_one)
    return Result(label, channel, workers, count, seconds, METER.spent(cpu, METER.sample()))


async def raw_smtp(sinks: Sinks, workers: int, count: int) -> Result:
    """The best a bare client does: one kept session per worker, the message composed once (only its
    Message-ID changes), MAIL/RCPT/DATA per message."""
    template = _raw_email()
    sessions: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
    for _ in range(workers):
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sinks.smtp_port, timeout=30)
        await client.connect()
        sessions.put_nowait(client)

    async def send(n: int) -> None:
        client = await sessions.get()
        content = template.replace(b"MESSAGEID", uuid.uuid4().hex.encode())
        await client.sendmail("rewards@orchard.local", [f"member{n}@example.com"], content)
        sessions.put_nowait(client)

    try:
        return await _measured("raw aiosmtplib", "email", workers, count, send)
    finally:
        while not sessions.empty():
            with contextlib.suppress(Exception):
                await sessions.get_nowait().quit()


async def raw_http(sinks: Sinks, workers: int, count: int) -> Result:
    url = f"{sinks.provider_url}/2010-04-01/Accounts/ACbench/Messages.json"
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=workers)) as client:

        async def send(n: int) -> None:
            answer = await client.post(
                url,
                data={
                    "To": f"+44770090{n % 10000:04d}",
                    "From": "+15550100001",
                    "Body": "Your code ORCH-1234",
                },
                auth=("ACbench", "token"),
                headers={"I-Twilio-Idempotency-Token": str(uuid.uuid4())},
            )
            answer.raise_for_status()

        return await _measured("raw httpx", "sms", workers, count, send)


async def run(admin_dsn: str, sinks: Sinks, workers: list[int], count: int) -> list[Result]:
    METER.sink_pids = sinks.pids
    results = []
    # An unrecorded warm-up: the first connections and the sinks' first writes pay alone otherwise.
    await raw_smtp(sinks, 2, 20)
    await raw_http(sinks, 2, 20)
    for n in workers:
        results.append(await raw_smtp(sinks, n, count))
        results.append(await ours(admin_dsn, sinks, Channel.EMAIL, n, count))
        results.append(await raw_http(sinks, n, count))
        results.append(await ours(admin_dsn, sinks, Channel.SMS, n, count))
    return results


def render(results: list[Result]) -> str:
    header = ("scenario", "channel", "workers", "messages", "seconds", "msg/s", "ratio")
    columns = "{:<18} {:<7} {:>7} {:>8} {:>8} {:>8} {:>6} {:>7} {:>7} {:>7}"
    lines = [columns.format(*header, "client", "sinks", "pg")]
    baseline: dict[tuple[str, int], float] = {}
    for r in results:
        if r.label.startswith("raw"):
            baseline[(r.channel, r.workers)] = r.rate
        ratio = r.rate / baseline[(r.channel, r.workers)]
        lines.append(
            f"{r.label:<18} {r.channel:<7} {r.workers:>7} {r.messages:>8} {r.seconds:>8.2f}"
            f" {r.rate:>8.1f} {ratio:>6.2f} {r.cpu_ms('client'):>7.2f} {r.cpu_ms('sinks'):>7.2f}"
            f" {r.cpu_ms('postgres'):>7.2f}"
        )
    lines.append(
        "ratio = our sends/s ÷ the raw client's sends/s to the same sink with the same concurrency, this run."
    )
    lines.append(
        "client / sinks / pg = CPU milliseconds per message of: this process (the raw client, or our"
        " workers), the two sink processes, the Postgres server (0 with DATABASE_URL)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 messages per scenario")
    parser.add_argument("--workers", default="1,4,16", help="worker counts to measure, comma-separated")
    args = parser.parse_args()
    count = 200 if args.quick else args.messages
    # One log line per send would be measured too; the bench keeps warnings only.
    configure_logging(Settings(ORCHARD_LOG_LEVEL="WARNING", ORCHARD_SERVICE="bench-delivery"))
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    base = Path(tempfile.mkdtemp(prefix="orchard-bench-delivery-"))
    base.chmod(0o755)
    try:
        with postgres(base) as admin_dsn, running_sinks(base) as sinks:
            results = asyncio.run(run(admin_dsn, sinks, workers, count))
        print(render(results))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

import asyncio
import uuid
from email.message import EmailMessage

import aiosmtplib
import asyncpg
import pytest

from deploy.infra.net import free_port
from deploy.infra.postgres import quote_ident
from deploy.runner import StackConfig, down, status, up
from deploy.sinks.processes import FAKE_PROVIDER, SMTP_SINK


@pytest.fixture
def sink_stack(tmp_path, kafka_bootstrap, pg_admin_dsn):
    config = StackConfig(
        var_dir=tmp_path,
        external_kafka=kafka_bootstrap,
        external_database=pg_admin_dsn,
        database=f"sinks_{uuid.uuid4().hex[:8]}",
        service_ports={},
        sink_ports={SMTP_SINK: free_port(), FAKE_PROVIDER: free_port()},
        ready_timeout_s=30,
        stop_grace_s=5,
    )
    try:
        yield config
    finally:
        down(config)
        asyncio.run(_drop_database(pg_admin_dsn, config.database))


async def _drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


def _send_mail(port: int) -> None:
    message = EmailMessage()
    message["From"] = "rewards@orchard.test"
    message["To"] = "ann@example.com"
    message["Subject"] = "hello"
    message["Message-ID"] = "<runner-test@orchard>"
    message.set_content("hi")
    asyncio.run(aiosmtplib.send(message, hostname="127.0.0.1", port=port))


def test_up_starts_the_local_sinks_status_shows_them_and_down_stops_them(sink_stack):
    report = up(sink_stack)
    assert report.started == [SMTP_SINK, FAKE_PROVIDER]
    rows = {row.name: row for row in status(sink_stack)}
    assert rows[SMTP_SINK].healthy
    assert rows[FAKE_PROVIDER].healthy

    _send_mail(sink_stack.sink_ports[SMTP_SINK])
    assert len(list((sink_stack.var_dir / "mail").glob("*.eml"))) == 1

    assert down(sink_stack) == [SMTP_SINK, FAKE_PROVIDER]
    rows = {row.name: row for row in status(sink_stack)}
    assert rows[SMTP_SINK].detail == "stopped"
    assert rows[FAKE_PROVIDER].detail == "stopped"


def test_the_default_stack_runs_the_sinks_on_their_documented_ports():
    config = StackConfig.from_env()
    assert config.sink_ports == {SMTP_SINK: 1025, FAKE_PROVIDER: 8190}

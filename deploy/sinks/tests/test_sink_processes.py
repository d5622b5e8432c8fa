import asyncio
from email.message import EmailMessage

import aiosmtplib
import pytest

from deploy.infra.net import free_port
from deploy.runner import StackConfig, down, status, up
from deploy.sinks.processes import FAKE_PROVIDER, SMTP_SINK
from deploy.testing import runner_on_shared_infra


@pytest.fixture
def sink_stack(tmp_path, kafka_bootstrap, pg_admin_dsn):
    with runner_on_shared_infra(
        tmp_path,
        kafka_bootstrap,
        pg_admin_dsn,
        "sinks",
        service_ports={},
        sink_ports={SMTP_SINK: free_port(), FAKE_PROVIDER: free_port()},
    ) as config:
        yield config


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

"""The sinks as processes of the local runner (`deploy.runner.LOCAL_SINKS`): `orchard up` starts them
after the services, `orchard status` shows them, `orchard down` stops them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploy.sinks.ports import FAKE_PROVIDER_PORT as PROVIDER_PORT
from deploy.sinks.ports import SMTP_SINK_PORT as SMTP_PORT

if TYPE_CHECKING:
    from deploy.runner import ProcessSpec, StackConfig

SMTP_SINK = "smtp-sink"
FAKE_PROVIDER = "fake-provider"
DEFAULT_SINK_PORTS = {SMTP_SINK: SMTP_PORT, FAKE_PROVIDER: PROVIDER_PORT}


def smtp_sink_process(config: StackConfig) -> ProcessSpec | None:
    from deploy.runner import ProcessSpec

    port = config.sink_ports.get(SMTP_SINK)
    if port is None:
        return None
    env = {"ORCHARD_SMTP_SINK_PORT": str(port), "ORCHARD_MAIL_DIR": str(config.var_dir / "mail")}
    return ProcessSpec(SMTP_SINK, "deploy.sinks.smtp", port, "local SMTP sink", env, ready_path=None)


def fake_provider_process(config: StackConfig) -> ProcessSpec | None:
    from deploy.runner import ProcessSpec

    port = config.sink_ports.get(FAKE_PROVIDER)
    if port is None:
        return None
    env = {"ORCHARD_PROVIDER_PORT": str(port), "ORCHARD_MESSAGES_DIR": str(config.var_dir / "messages")}
    return ProcessSpec(
        FAKE_PROVIDER, "deploy.sinks.provider", port, "fake SMS/WhatsApp provider", env, ready_path="/health"
    )

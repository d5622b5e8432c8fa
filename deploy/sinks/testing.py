"""Run the sinks inside a test's event loop, on free ports, with their files in a temp dir."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn

from deploy.infra.net import free_port
from deploy.sinks.provider import ProviderConfig, create_app
from deploy.sinks.smtp import SmtpSinkConfig, start_smtp_sink


@dataclass(frozen=True)
class RunningSmtpSink:
    host: str
    port: int
    mail_dir: Path

    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(p.read_bytes(), _class=EmailMessage, policy=policy.default)
            for p in sorted(self.mail_dir.glob("*.eml"))
        ]


@dataclass(frozen=True)
class RunningProvider:
    base_url: str
    messages_dir: Path

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.messages_dir.glob("*.json"))]


@contextlib.asynccontextmanager
async def smtp_sink(directory: Path, *, count_repeats: bool = False) -> AsyncIterator[RunningSmtpSink]:
    config = SmtpSinkConfig(port=free_port(), mail_dir=directory, count_repeats=count_repeats)
    server = await start_smtp_sink(config)
    try:
        yield RunningSmtpSink(config.host, config.port, config.mail_dir)
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=5)


@contextlib.asynccontextmanager
async def fake_provider(
    directory: Path, *, timeout_delay_s: float = 5.0, count_repeats: bool = False
) -> AsyncIterator[RunningProvider]:
    config = ProviderConfig(
        port=free_port(), messages_dir=directory, timeout_delay_s=timeout_delay_s, count_repeats=count_repeats
    )
    directory.mkdir(parents=True, exist_ok=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), host=config.host, port=config.port, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield RunningProvider(f"http://{config.host}:{config.port}", directory)
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)

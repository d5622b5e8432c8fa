"""Writing a sink's messages: one file each, written whole (temp file, then rename) so a reader never
sees half a message.

`BatchWriter` is what the sinks use while serving: messages arriving together are written by one
thread hop (a group write) instead of one hop each, and each caller is answered only once its file is
in place, so a sink still never acknowledges a message it has not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


def write_atomically(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def _write_all(directory: Path, files: Sequence[tuple[str, bytes]]) -> list[BaseException | None]:
    outcomes: list[BaseException | None] = []
    for name, content in files:
        try:
            write_atomically(directory, name, content)
            outcomes.append(None)
        except Exception as exc:  # one bad write fails its own caller only
            outcomes.append(exc)
    return outcomes


class BatchWriter:
    """Writes files into `directory` off the event loop, many per thread hop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._pending: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def write(self, name: str, content: bytes) -> None:
        """Return once the file is written whole (or raise what writing it raised)."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((name, content, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await asyncio.to_thread(
                    _write_all, self.directory, [(name, content) for name, content, _ in batch]
                )
            except BaseException as exc:
                outcomes = [exc] * len(batch)
            for (_, _, done), failure in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if failure is None:
                    done.set_result(None)
                else:
                    done.set_exception(failure)

    async def close(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task

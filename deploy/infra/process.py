"""Process plumbing shared by the broker, the database and the services: spawn detached or tied to
the parent, find them again from a pid file, stop them gently and then for sure."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from deploy.infra.errors import InfraError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the forked child just before exec: the kernel SIGKILLs it when the parent thread dies,
    # so a test run that is itself killed (-9, CI timeout) leaves no broker or postmaster behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: tuple[int, int] | None = None,
    tie_to_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a process in its own session with stdout and stderr appended to log_file.

    Its own session keeps it alive when the terminal that ran `orchard up` closes; `tie_to_parent`
    does the opposite for test instances. Call this from the main thread when `tie_to_parent` is set:
    the kernel ties the child to the thread that forked it, not to the process.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    preexec: Callable[[], None] | None = _die_with_parent if tie_to_parent else None
    with log_file.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=user[0] if user else None,
            group=user[1] if user else None,
            extra_groups=[] if user else None,
            start_new_session=True,
            preexec_fn=preexec,
        )


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True when the pid runs (not a zombie) and, given a marker, its command line contains it.

    The marker guards against a recycled pid from a stale pid file pointing at an unrelated process.
    """
    if pid is None or pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
        if marker is not None and not any(marker in part for part in proc.cmdline()):
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True


def _reap(pid: int) -> None:
    # Our own exited children stay zombies (and "exist") until someone waits for them.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def read_pid_file(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def write_pid_file(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def stop_processes(pids: Iterable[int], *, sig: int = signal.SIGTERM, grace: float = 25.0) -> list[int]:
    """Send `sig` to every pid, wait up to `grace` seconds for all of them together, then SIGKILL the
    rest (with their children). Returns the pids that had to be killed."""
    procs: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc = psutil.Process(pid)
            proc.send_signal(sig)
            procs.append(proc)
    alive = _wait_gone(procs, grace)
    for proc in alive:
        kill_tree(proc.pid)
    return [proc.pid for proc in alive]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant at once, as a crash would, and wait until all are gone."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _wait_gone(family, 10)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still running after `timeout`.

    A zombie counts as gone: orphans are reaped by init, which in a container may take seconds.
    """
    deadline = time.monotonic() + timeout
    pending = list(procs)
    while True:
        pending = [proc for proc in pending if _still_running(proc)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.02)


def _still_running(proc: psutil.Process) -> bool:
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return True
    except psutil.NoSuchProcess:
        return False
    _reap(proc.pid)
    return False


def run_setup(args: Sequence[str], what: str, **options: Any) -> None:
    """Run a server's one-off setup command (format its storage, initdb); when it fails, its last line
    of output says why."""
    result = subprocess.run(args, capture_output=True, text=True, check=False, **options)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines() or ["?"]
        raise InfraError(f"{what} failed: {detail[-1]}")


class SupervisedServer(ABC):
    """A server process living in a directory of its own, stopped, killed and restarted alike."""

    # The signal of a clean stop; subclasses pick their server's graceful one.
    stop_signal: int = signal.SIGTERM
    _process: subprocess.Popen[bytes] | None

    @property
    @abstractmethod
    def pid(self) -> int | None: ...

    start_timeout_s: float = 60
    """How long `start` waits for the server when not told."""

    @abstractmethod
    def launch(self) -> None:
        """Spawn the server unless it already runs, without waiting for it (others may start meanwhile)."""

    @abstractmethod
    def wait_ready(self, timeout: float) -> None:
        """Return once the server serves; InfraError when it does not within `timeout` seconds."""

    def start(self, timeout: float | None = None) -> None:
        """Start the server unless it already runs from its directory; return once it serves."""
        self.launch()
        self.wait_ready(self.start_timeout_s if timeout is None else timeout)

    def is_running(self) -> bool:
        return self.pid is not None

    def stop(self, timeout: float = 30) -> None:
        """Graceful stop with `stop_signal`; SIGKILL if it has not exited within `timeout` seconds."""
        pid = self.pid
        if pid is not None:
            stop_processes([pid], sig=self.stop_signal, grace=timeout)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the server and its children at once, as a crash or power loss would."""
        pid = self.pid
        if pid is not None:
            kill_tree(pid)
        self._forget()

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def _forget(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1)
            self._process = None
        self._forget_pid()

    def _forget_pid(self) -> None:  # noqa: B027 - optional hook, a no-op for most servers
        """Drop any pid bookkeeping of our own (servers that keep their own pid file need none)."""

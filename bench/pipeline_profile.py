"""`--profile`: py-spy samples every service process during the burst; the collapsed stacks and an SVG flame
graph per process are kept beside the JSON, and the stacks are summed up here into each service's hottest
functions (self time) and hottest functions of our own code (inclusive time)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

_OUR_CODE = re.compile(r"\((?:[^()]*/)?(?:services|chassis|contracts)/")
_ENTRY = ("<module> (", "run_service (")
"""Frames of ours on every stack (the entry point), which would top the inclusive list and say nothing."""
IDLE = frozenset(
    {
        "EpollSelector.select (selectors.py)",
        "Condition.wait (threading.py)",
        "_worker (concurrent/futures/thread.py)",
        "Event.wait (threading.py)",
    }
)
"""Leaves of a thread waiting for work (py-spy --nonblocking cannot always tell idle threads apart)."""
SOCKET_SEND = frozenset({"_SelectorSocketTransport.write (asyncio/selector_events.py)"})
"""The send() of one request to PostgreSQL, Kafka or a sink: where a round trip's cost shows."""
_LINE = re.compile(r":\d+\)$")


FORMATS = {"raw": "collapsed.txt", "flamegraph": "svg"}
"""What py-spy writes per process: collapsed stacks (read by `hot_spots`) and an SVG flame graph. py-spy
writes one format per run, so each process gets two samplers side by side."""

Recording = dict[str, tuple[subprocess.Popen[bytes], Path]]
"""Per process: per format, the py-spy sampling it and the file it writes when stopped."""


def start(pids: dict[str, int], out_dir: Path, *, rate: int = 50) -> dict[str, Recording]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: pip install -e '.[dev]'")
    out_dir.mkdir(parents=True, exist_ok=True)
    running: dict[str, Recording] = {}
    for name, pid in pids.items():
        running[name] = {}
        for fmt, suffix in FORMATS.items():
            path = out_dir / f"{name}.{suffix}"
            command = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", fmt]
            command += ["--nonblocking", "--output", str(path)]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            running[name][fmt] = (process, path)
    return running


def stop(running: dict[str, Recording]) -> dict[str, dict[str, Path]]:
    """SIGINT makes py-spy write what it sampled; returns, per process and format, the files written."""
    for recording in running.values():
        for process, _ in recording.values():
            process.send_signal(signal.SIGINT)
    written: dict[str, dict[str, Path]] = {}
    for name, recording in running.items():
        for fmt, (process, path) in recording.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if path.exists():
                written.setdefault(name, {})[fmt] = path
    return written


def _frame(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def hot_spots(collapsed: str, *, top: int = 8) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks ("frame;frame;… count" per line): the functions most often on top of
    the stack (self), the functions of our code most often anywhere on it (inclusive), and, of the
    samples caught in a socket send (one per SQL statement or Kafka request), which function of ours was
    closest to it; as shares of the samples taken while the process was busy (stacks ending in an idle
    wait are left out)."""
    self_time: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    sends: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if "(" in f]
        if not frames or frames[-1] in IDLE:
            continue
        total += count
        self_time[frames[-1]] += count
        mine = [f for f in frames if _OUR_CODE.search(f) and not f.startswith(_ENTRY)]
        for frame in set(mine):
            ours[frame] += count
        if frames[-1] in SOCKET_SEND and mine:
            sends[mine[-1]] += count
    if not total:
        return {"self": [], "ours_inclusive": [], "socket_sends_by_caller": [], "samples": []}
    return {
        "self": [(f, n / total) for f, n in self_time.most_common(top)],
        "ours_inclusive": [(f, n / total) for f, n in ours.most_common(top)],
        "socket_sends_by_caller": [(f, n / total) for f, n in sends.most_common(top)],
        "samples": [("busy samples", float(total))],
    }

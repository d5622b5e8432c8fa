"""`--profile`: py-spy samples every service process during the burst; the collapsed stacks are kept beside
the JSON and summed up here into each service's hottest functions (self time) and hottest functions of
our own code (inclusive time)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

OUR_CODE = ("/services/", "/chassis/", "/contracts/")
_LINE = re.compile(r":\d+\)$")


def start(
    pids: dict[str, int], out_dir: Path, *, rate: int = 50
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    running = {}
    for name, pid in pids.items():
        path = out_dir / f"{name}.collapsed.txt"
        command = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        command += ["--nonblocking", "--output", str(path)]
        running[name] = (
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            path,
        )
    return running


def stop(running: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> dict[str, Path]:
    """SIGINT makes py-spy write what it sampled; returns the files it wrote."""
    for process, _ in running.values():
        process.send_signal(signal.SIGINT)
    written = {}
    for name, (process, path) in running.items():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if path.exists():
            written[name] = path
    return written


def _frame(frame: str) -> str:
    return _LINE.sub(")", frame.strip())


def hot_spots(collapsed: str, *, top: int = 8) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks ("frame;frame;… count" per line): the functions most often on top of
    the stack (self) and the functions of our code most often anywhere on it (inclusive), as shares of
    the samples taken while the process was busy."""
    self_time: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            if any(part in frame for part in OUR_CODE):
                ours[frame] += count
    if not total:
        return {"self": [], "ours_inclusive": [], "samples": []}
    return {
        "self": [(f, n / total) for f, n in self_time.most_common(top)],
        "ours_inclusive": [(f, n / total) for f, n in ours.most_common(top)],
        "samples": [("busy samples", float(total))],
    }

"""Run a command and record the peak resident memory of it and of every process it starts.

The peak is the kernel's high-water mark (``VmHWM`` in ``/proc/PID/status``), read while each
process lives, so short spikes between two polls are not missed.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil


def _high_water(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_measured(command: list[str], poll: float = 0.5, **kwargs) -> tuple[float, int, dict[int, dict]]:
    """(seconds, exit status, {pid: {"name", "cmdline", "peak_bytes"}}) of ``command`` and its children."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, **kwargs)
    peaks: dict[int, dict] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for p in processes:
            peak = _high_water(p.pid)
            if peak is None:
                continue
            entry = peaks.setdefault(p.pid, {"name": "", "cmdline": "", "peak_bytes": 0})
            if not entry["cmdline"]:
                try:
                    entry["name"], entry["cmdline"] = p.name(), " ".join(p.cmdline())[:200]
                except psutil.Error:
                    pass
            entry["peak_bytes"] = max(entry["peak_bytes"], peak)
        time.sleep(poll)
    return time.perf_counter() - start, proc.returncode, peaks

"""Shared helpers for the benchmarks: run a command in a fresh process, time it, read its peak memory.

Each measurement runs in its own child process so that its peak resident memory is its own
(``os.wait4`` returns the rusage of exactly that child).
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_gib: float
    cpu_seconds: float = float("nan")  # user + system of the child: steadier than wall under load


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None) -> Measurement:
    """Run ``argv`` to completion; its wall time and peak RSS. Raises if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"benchmark command failed ({process.returncode}): {' '.join(argv)}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measurement(seconds, usage.ru_maxrss / 2**20, cpu)  # ru_maxrss is in KiB on Linux


def median_of(argv: Sequence[str], repeats: int) -> tuple[Measurement, list[Measurement]]:
    """The median time and median peak memory over ``repeats`` runs, and every run."""
    runs = [run_measured(argv) for _ in range(repeats)]
    return (
        Measurement(
            statistics.median(r.seconds for r in runs),
            statistics.median(r.peak_rss_gib for r in runs),
            statistics.median(r.cpu_seconds for r in runs),
        ),
        runs,
    )


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory_gib = float("nan")
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {sys.version.split()[0]}"
    )


def interleaved_medians(
    functions: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, float, object]]:
    """Median wall and CPU seconds of each function (and its last result), in-process, run in
    turn (A, B, C, A, B, C, ...) so that a burst of load from other processes hits every
    contender alike. CPU seconds (all threads of this process) are disturbed less than wall
    time by other processes' load."""
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, function in functions.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            results[name] = function()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return {
        name: (statistics.median(wall[name]), statistics.median(cpu[name]), results[name])
        for name in functions
    }


def read_proc(path: str) -> str | None:
    """A ``/proc`` file's text, or None when its process ended meanwhile."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (Linux ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := read_proc(f"/proc/{entry}/stat")) is not None:
            # the command name is in parentheses and may hold spaces: split after the last ')'
            parent = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def pss_bytes(pid: int) -> int:
    """A process's proportional set size (shared pages divided among their sharers): summed
    over processes it counts each page once, which RSS does not. 0 when it ended."""
    rollup = read_proc(f"/proc/{pid}/smaps_rollup") or ""
    found = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


class TreeMemoryPeak:
    """Samples, every ``interval`` seconds until :meth:`stop`, the summed PSS of ``root``'s
    process tree (a job and the worker processes it starts) and keeps the peak, in GiB:
    ``ru_maxrss`` of ``os.wait4`` is the largest single process, not the tree's sum."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.peak_gib = 0.0
        self._root, self._interval = root, interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            total = sum(pss_bytes(pid) for pid in process_tree(self._root))
            self.peak_gib = max(self.peak_gib, total / 2**30)
            self._done.wait(self._interval)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak_gib

"""Benchmark: ``rollrisk score`` and ``build-training-set`` with ``--engine spark`` on a large
portfolio, with the memory of each process of the run sampled while it runs.

In ``local[N]`` mode one run is three kinds of process, and they must be told apart to say
whether the *driver* stays bounded:

* the **Python driver**: the ``rollrisk`` process itself (plans the read, sums the counts,
  writes the rejects and the manifest, streams the input files' bytes for the fingerprint);
* the **JVM**: Spark's driver *and*, in local mode, its executors (the shuffle, the cached
  blocks); its heap is capped by ``-Xmx`` = ``ROLLRISK_SPARK_DRIVER_MEMORY``, its RSS adds
  the JVM's own code, threads and off-heap buffers;
* the **Python workers**: ``pyspark.daemon`` and the workers it forks, one per running task,
  which read, validate, score or build one partition each.

Every ``--interval`` seconds (default 0.5) the bench walks the process tree of the child from
``/proc`` and reads each process's ``VmRSS`` (``/proc/PID/status``), its ``Pss``
(``/proc/PID/smaps_rollup``: forked workers share pages with the daemon, so the sum of their
RSS counts shared pages several times; the sum of PSS does not) and its CPU time
(``/proc/PID/stat``, user + system; the last value seen per process is kept, so a process that
ends between two samples loses at most one interval of CPU). Peaks are per sample. Wall time
and the child's own rusage come from ``os.wait4``.

Run (each command in a fresh child process; its output in ``OUT/<output name>.log``, its
samples in ``OUT/<output name>.memory.csv``, the figures in ``OUT/bench_spark_scale.json``):
    nice -n 19 .venv/bin/python bench/bench_spark_scale.py --data /work/benchcache/sim-1m \\
        --model models:/rollrisk-spark10m@challenger \\
        --tracking-uri sqlite:////work/benchcache/spark10m-mlflow/mlflow.db \\
        --out /work/benchcache/spark-1m --commands score build-training-set
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import process_tree, pss_bytes, read_proc  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GIB = 2**30


def cpu_model() -> str:
    """``lscpu``'s model name (the CPU the figures were measured on)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    found = re.search(r"^Model name:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else "unknown CPU"


@dataclass
class ProcessSample:
    pid: int
    kind: str  # driver, jvm, worker, other
    rss: int  # bytes
    pss: int  # bytes
    cpu: float  # seconds, user + system, own


def _sample(pid: int, kind_of: dict[int, str], root: int) -> ProcessSample | None:
    status = read_proc(f"/proc/{pid}/status")
    stat = read_proc(f"/proc/{pid}/stat")
    if status is None or stat is None:
        return None
    rss = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if rss is None:  # a zombie
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    # classified anew each sample: spark-submit's shell script becomes the JVM by exec
    kind_of[pid] = _kind(pid, root, kind_of)
    return ProcessSample(pid, kind_of[pid], int(rss.group(1)) * 1024, pss_bytes(pid), cpu)


def _kind(pid: int, root: int, kind_of: dict[int, str]) -> str:
    if pid == root:
        return "driver"
    command = (read_proc(f"/proc/{pid}/cmdline") or "").split("\0")
    name = Path(command[0]).name if command and command[0] else ""
    if name == "java":
        return "jvm"
    if name.startswith("python") or "pyspark" in " ".join(command):
        # Python under the JVM: the daemon and its forked workers
        parent = _parent(pid)
        while parent not in (0, 1, root):
            if kind_of.get(parent) == "jvm":
                return "worker"
            parent = _parent(parent)
    return "other"


def _parent(pid: int) -> int:
    stat = read_proc(f"/proc/{pid}/stat")
    return 0 if stat is None else int(stat[stat.rindex(")") + 2 :].split()[1])


@dataclass
class Peaks:
    """What the sampler kept: peaks per kind of process, CPU per process, load averages."""

    samples: int = 0
    driver_rss: int = 0
    jvm_rss: int = 0
    workers_rss_sum: int = 0
    workers_pss_sum: int = 0
    worker_rss_max: int = 0
    workers_max: int = 0  # most workers alive at once (daemon included)
    total_pss: int = 0
    cpu_by_pid: dict[int, tuple[str, float]] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average per sample
    jvm_xmx: str | None = None

    def cpu(self, kind: str) -> float:
        return sum(cpu for k, cpu in self.cpu_by_pid.values() if k == kind)


def sample_tree(
    root: int, peaks: Peaks, stop: threading.Event, interval: float, timeline: Path
) -> None:
    """Sample the process tree of ``root`` until ``stop`` is set; each sample is also a line
    of ``timeline`` (CSV: seconds, MiB of driver, JVM, workers' sum and largest worker, load),
    so a run stopped before its end still shows how each process grew."""
    started = time.perf_counter()
    log = timeline.open("w", buffering=1)
    log.write("seconds,driver_mib,jvm_mib,workers_sum_mib,worker_max_mib,workers,load\n")
    while not stop.is_set():
        kind_of: dict[int, str] = {}  # parents come before their children in the walk
        samples = [s for pid in process_tree(root) if (s := _sample(pid, kind_of, root))]
        workers = [s for s in samples if s.kind == "worker"]
        for s in samples:
            peaks.cpu_by_pid[s.pid] = (s.kind, s.cpu)
            if s.kind == "driver":
                peaks.driver_rss = max(peaks.driver_rss, s.rss)
            elif s.kind == "jvm" and s.rss > peaks.jvm_rss:
                # the largest JVM is Spark's (the launcher's own JVM, -Xmx128m, runs first)
                peaks.jvm_rss = s.rss
                flags = (read_proc(f"/proc/{s.pid}/cmdline") or "").split("\0")
                peaks.jvm_xmx = next((f for f in flags if f.startswith("-Xmx")), "")
        peaks.workers_rss_sum = max(peaks.workers_rss_sum, sum(s.rss for s in workers))
        peaks.workers_pss_sum = max(peaks.workers_pss_sum, sum(s.pss for s in workers))
        peaks.worker_rss_max = max([peaks.worker_rss_max, *(s.rss for s in workers)])
        peaks.workers_max = max(peaks.workers_max, len(workers))
        peaks.total_pss = max(peaks.total_pss, sum(s.pss for s in samples))
        peaks.load.append(float((read_proc("/proc/loadavg") or "0").split()[0]))
        peaks.samples += 1
        mib = [
            sum(s.rss for s in samples if s.kind == "driver"),
            sum(s.rss for s in samples if s.kind == "jvm"),
            sum(s.rss for s in workers),
            max((s.rss for s in workers), default=0),
        ]
        log.write(
            f"{time.perf_counter() - started:.1f},"
            + ",".join(f"{m / 2**20:.0f}" for m in mib)
            + f",{len(workers)},{peaks.load[-1]}\n"
        )
        stop.wait(interval)
    log.close()


@dataclass
class CommandResult:
    command: str
    argv: list[str]
    seconds: float
    exit_code: int
    child_cpu_seconds: float  # rusage of the child and its waited-for descendants
    peaks: Peaks
    output: str  # the command's last lines (counts)


def run_sampled(argv: list[str], env: dict[str, str], log: Path, interval: float) -> CommandResult:
    """Run ``argv`` (stdout and stderr to ``log``), sampling its process tree meanwhile (the
    samples in ``log`` with the suffix ``.memory.csv``)."""
    peaks = Peaks()
    stop = threading.Event()
    started = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)
        sampler = threading.Thread(
            target=sample_tree,
            args=(process.pid, peaks, stop, interval, log.with_suffix(".memory.csv")),
            daemon=True,
        )
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    tail = log.read_text(errors="replace").splitlines()[-30:]
    return CommandResult(
        command=argv[1],
        argv=argv,
        seconds=seconds,
        exit_code=process.returncode,
        child_cpu_seconds=usage.ru_utime + usage.ru_stime,
        peaks=peaks,
        output="\n".join(tail),
    )


def _gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def counts(command: str, out: Path) -> dict[str, int]:
    """What the run produced: accounts scored (the manifest's partitions), or training rows."""
    if command == "score":
        manifest = json.loads((out / "current" / "manifest.json").read_text())
        return {
            "accounts_scored": sum(p["rows"] for p in manifest["partitions"]),
            "partitions": len(manifest["partitions"]),
        }
    manifest = json.loads((out / "manifest.json").read_text())
    return {"training_rows": manifest["rows"], "partitions": len(manifest["parts"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the portfolio folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for outputs and logs")
    parser.add_argument("--model", required=True, help="MLflow model URI (score)")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--as-of", default=None, help="score's --as-of (default: the job's)")
    parser.add_argument("--partitions", type=int, default=None, help="score's --partitions")
    parser.add_argument(
        "--commands", nargs="+", default=["score", "build-training-set"],
        choices=["score", "build-training-set"],
    )  # fmt: skip
    parser.add_argument("--master", default="local[2]", help="ROLLRISK_SPARK_MASTER")
    parser.add_argument("--driver-memory", default=None, help="ROLLRISK_SPARK_DRIVER_MEMORY")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--score-out", default="scores", help="score's --out, under --out")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": args.tracking_uri,
        "ROLLRISK_SPARK_MASTER": args.master,
    }
    if args.driver_memory:
        env["ROLLRISK_SPARK_DRIVER_MEMORY"] = args.driver_memory
    rollrisk = str(Path(sys.executable).with_name("rollrisk"))
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; nice {os.nice(0)}", flush=True)
    print(f"data: {args.data}; spark master {args.master}", flush=True)
    results = []
    for command in args.commands:
        out = args.out / (args.score_out if command == "score" else "training_set.parquet")
        argv = [rollrisk, command, "--data", str(args.data), "--out", str(out), "--engine", "spark"]
        if command == "score":
            argv += ["--model", args.model]
            argv += ["--as-of", args.as_of] if args.as_of else []
            argv += ["--partitions", str(args.partitions)] if args.partitions else []
        log = args.out / f"{out.name}.log"
        result = run_sampled(argv, env, log, args.interval)
        p = result.peaks
        produced = counts(command, out) if result.exit_code == 0 else {}
        load = f"{min(p.load):.1f}-{max(p.load):.1f}" if p.load else "-"
        print(
            f"\n{command}: exit {result.exit_code}, wall {result.seconds:,.1f} s, {p.samples} "
            f"samples, load average {load}\n"
            f"  Python driver   peak RSS {_gib(p.driver_rss)}, CPU {p.cpu('driver'):,.1f} s\n"
            f"  JVM ({p.jvm_xmx or 'no -Xmx seen'}) peak RSS {_gib(p.jvm_rss)}, "
            f"CPU {p.cpu('jvm'):,.1f} s\n"
            f"  Python workers  peak sum RSS {_gib(p.workers_rss_sum)} (sum PSS "
            f"{_gib(p.workers_pss_sum)}), max one {_gib(p.worker_rss_max)}, up to "
            f"{p.workers_max} at once, CPU {p.cpu('worker'):,.1f} s\n"
            f"  whole tree      peak sum PSS {_gib(p.total_pss)}; child rusage CPU "
            f"{result.child_cpu_seconds:,.1f} s\n"
            f"  produced: {produced}",
            flush=True,
        )
        results.append({**asdict(result), "produced": produced})
        entry = results[-1]["peaks"]
        entry["cpu_by_kind"] = {k: p.cpu(k) for k in ("driver", "jvm", "worker", "other")}
        entry["load"] = [min(p.load), max(p.load)] if p.load else []  # low, high
        del entry["cpu_by_pid"]
        if result.exit_code != 0:
            print(result.output, flush=True)
    (args.out / "bench_spark_scale.json").write_text(
        json.dumps({"cpu": cpu_model(), "data": str(args.data), "runs": results}, indent=2)
    )
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Where the machine's CPU went during a measured point.

On a small machine the pipeline shares the cores with the broker, the load
generator and the read-back; a point that falls behind may do so because the
machine is full, not because the pipeline is slow. :class:`CpuMeter` reads, at
the start and the end of a point, the CPU time of each party:

- the pipeline process (``pipeline_proc.PipelineProcess``);
- the broker: the local process listening on the bootstrap port, when there is one;
- the bench itself: this process (read-back, lag probe) and the load generator's
  process, which reports its own CPU from t0 to its last acknowledgement (its set-up
  left out);
- the whole machine (``/proc/stat``), so the rest is what none of the three used.

Linux only: elsewhere every reading is NaN and the report says so.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuMeter", "CpuReading", "listening_pid", "process_cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat_cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds in a ``/proc/.../stat`` file (a process or one of its
    threads); OSError when it is gone."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far; NaN if unknown."""
    if pid is None:
        return math.nan
    try:
        return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))
    except OSError:
        return math.nan


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait, since boot."""
    try:
        head = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return math.nan
    ticks = [int(x) for x in head[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def listening_pid(port: int) -> int | None:
    """The local process listening on TCP ``port`` (None: none, or not visible to us)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")  # 0A: LISTEN
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


@dataclass(frozen=True)
class CpuReading:
    at: float  # monotonic seconds
    machine_s: float
    pipeline_s: float
    broker_s: float
    bench_s: float  # this process

    def per_record_us(
        self, before: CpuReading, records: int, generator_s: float = 0.0
    ) -> dict[str, float]:
        """CPU µs a record of each party between ``before`` and this reading (with the
        generator process's ``generator_s`` in that time), the rest of the machine, and
        ``busy_cores`` (the machine's busy time over the wall time)."""
        n = max(records, 1)
        used = {
            "pipeline": self.pipeline_s - before.pipeline_s,
            "broker": self.broker_s - before.broker_s,
            "generator and read-back": self.bench_s - before.bench_s + generator_s,
        }
        machine = self.machine_s - before.machine_s
        known = sum(v for v in used.values() if not math.isnan(v))
        out = {k: v * 1e6 / n for k, v in used.items()}
        out["rest of the machine"] = max(0.0, machine - known) * 1e6 / n
        out["busy_cores"] = machine / max(self.at - before.at, 1e-9)
        return out


class CpuMeter:
    """Reads the CPU of the pipeline, the broker at ``bootstrap`` (when local), this bench
    process with its children, and the machine."""

    def __init__(self, bootstrap: str) -> None:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        local = host in ("127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0", "")
        self.broker_pid = listening_pid(int(port)) if local and port.isdigit() else None

    def read(self, pipeline_pid: int | None) -> CpuReading:
        return CpuReading(
            time.monotonic(),
            machine_busy_seconds(),
            process_cpu_seconds(pipeline_pid),
            process_cpu_seconds(self.broker_pid),
            time.process_time(),  # this process only: the generator reports its own
        )

"""What machine a result came from: the facts written beside every number."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streamfer.paths import PACKAGE_DIR, checkout_root

REPO_ROOT = checkout_root() or PACKAGE_DIR


@dataclass(frozen=True)
class Machine:
    """Cores, CPU model, RAM and load at measurement time, plus date and commit."""

    cores: int
    cpu_model: str
    ram_gib: float
    load_avg: tuple[float, float, float]
    python: str
    date_utc: str
    commit: str

    def describe(self) -> str:
        """One line: ``2 cores AMD EPYC, 23.4 GiB RAM, load 0.42/0.40/0.21``."""
        load = "/".join(f"{x:.2f}" for x in self.load_avg)
        return (
            f"{self.cores} cores {self.cpu_model}, {self.ram_gib:.1f} GiB RAM, "
            f"load {load} (1/5/15 min), Python {self.python}"
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return float("nan")


def current_commit(repo: Path = REPO_ROOT) -> str:
    """Short commit hash, with ``+dirty`` when tracked files changed; ``unknown`` outside git."""
    try:
        sha = _git(repo, "rev-parse", "--short", "HEAD")
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10
    )
    return done.stdout.strip()


def probe_machine() -> Machine:
    """Read the machine's facts now (load average included, so call it at measurement time)."""
    return Machine(
        cores=os.cpu_count() or 1,
        cpu_model=_cpu_model(),
        ram_gib=_ram_gib(),
        load_avg=os.getloadavg(),
        python=platform.python_version(),
        date_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        commit=current_commit(),
    )

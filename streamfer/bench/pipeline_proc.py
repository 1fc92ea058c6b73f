"""The pipeline under test, run as ``streamfer run`` in its own process group.

The benchmark takes a shipped config (``deploy/configs/*.yaml``) as it is —
batching, client and runtime settings — and rewrites only what must differ
per run: topics, consumer group, bootstrap, the metrics port (0: any free
port) and, where asked, the mode. The rewritten file is validated before
anything starts.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from streamfer.bench.cpu import process_cpu_seconds, stat_cpu_seconds
from streamfer.bench.kafka_io import OffsetProbe, topic_span
from streamfer.errors import ConfigError, StreamferError
from streamfer.paths import PACKAGE_DIR, shipped
from streamfer.pipeline.config import PipelineConfig, parse_config

CONFIG_DIR = shipped("configs")


def load_raw(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} | top level must be a mapping (got {type(raw).__name__})")
    # model paths relative to the original file's directory, as load_config resolves them
    for model in (raw.get("models") or {}).values():
        if isinstance(model, dict) and isinstance(model.get("path"), str):
            p = Path(model["path"])
            model["path"] = str(p if p.is_absolute() else (path.parent / p).resolve())
    return raw


def bench_config(
    base: dict[str, Any],
    *,
    source: str,
    kind: str,
    bootstrap: str,
    input_topic: str,
    output_topic: str,
    group: str,
    overrides: dict[str, Any] | None = None,
    metrics_enabled: bool = True,
) -> tuple[dict[str, Any], PipelineConfig]:
    """``base`` with its one ``kind`` stream pointed at the benchmark's topics; validated."""
    raw = copy.deepcopy(base)
    streams = [s for s in raw.get("streams", []) if s.get("kind") == kind]
    if not streams:
        raise ConfigError(f"{source} | no stream of kind {kind!r}. Note: the benchmark needs one")
    stream = dict(streams[0])
    stream.update(
        input_topic=input_topic, output_topic=output_topic, dlq_topic=f"{input_topic}.dlq"
    )
    stream.update(overrides or {})
    raw["streams"] = [stream]
    raw["models"] = {stream["model"]: raw["models"][stream["model"]]}
    raw.setdefault("kafka", {})["bootstrap_servers"] = bootstrap
    raw.setdefault("consumer", {})["group_id"] = group
    raw["metrics"] = {**raw.get("metrics", {}), "port": 0, "enabled": metrics_enabled}
    return raw, parse_config(raw, f"{source} (benchmark copy)")


class PipelineProcess:
    """``streamfer run -c <rewritten config> [-w N]``; start() / stop(), a context manager."""

    def __init__(self, raw_config: dict[str, Any], workers: int = 1, log_dir: Path | None = None):
        self.raw_config = raw_config
        self.workers = workers
        self.log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="streamfer-bench-")
        cfg_path = Path(self._tmp.name) / "pipeline.yaml"
        raw = _own_state_dir(self.raw_config, Path(self._tmp.name) / "state")
        cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        self.log_path = Path(self.log_dir or self._tmp.name) / "pipeline.log"
        log = self.log_path.open("wb")
        cmd = [sys.executable, "-m", "streamfer.pipeline.cli", "run", "-c", str(cfg_path)]
        if self.workers > 1:
            cmd += ["-w", str(self.workers)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=PACKAGE_DIR.parent, env=env,
            start_new_session=True,
        )  # fmt: skip
        log.close()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the pipeline process has used so far."""
        return process_cpu_seconds(self.pid)

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU time so far per live thread of the pipeline, by OS name (see thread_cpu)."""
        return {} if self._proc is None else thread_cpu(self._proc.pid)

    def check_alive(self) -> None:
        """StreamferError with the log's tail when the pipeline exited on its own."""
        if self._proc is not None and self._proc.poll() is not None:
            raise StreamferError(
                f"pipeline | exited with code {self._proc.returncode} during the benchmark. "
                f"Note: its log ends with:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (drain), then SIGKILL after ``timeout_s``; returns the exit code."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            code = proc.returncode
        if self._tmp is not None and self.log_dir is None:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> PipelineProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def close(self) -> None:
        """``stop()`` for ``contextlib.closing``."""
        self.stop()


def _own_state_dir(raw: dict[str, Any], where: Path) -> dict[str, Any]:
    """``raw`` with each stream that names no state directory given ``where``: the default
    (the system temp dir) would keep every run's stores (a new group each run) for good.
    The directory lives as long as the process's temporary directory."""
    raw = copy.deepcopy(raw)
    for stream in raw.get("streams") or []:
        state = stream.get("state")
        if isinstance(state, dict) and not state.get("dir"):
            state["dir"] = str(where)
    return raw


def wait_decisions(proc: PipelineProcess, count: Any, expected: int, timeout_s: float) -> int:
    """Poll ``count()`` until ``expected``; fail fast if the pipeline dies. Returns last count."""
    deadline = time.monotonic() + timeout_s
    got = int(count())
    while got < expected and time.monotonic() < deadline:
        proc.check_alive()
        time.sleep(0.2)  # poll interval
        got = int(count())
    return got


STALL_S = 30.0


def start_flowing(
    raw_config: dict[str, Any],
    count: Callable[[], int],
    say: Callable[[str], None],
    stall_s: float = STALL_S,
    attempts: int = 3,
    nudge: Callable[[], object] | None = None,
) -> tuple[PipelineProcess, int]:
    """Start the pipeline and return once ``count()`` (its outputs) moves; restarts on a stall.

    A pipeline whose consumer joins its group before its metadata lists the
    input topic can sit without partitions until the next metadata refresh
    (minutes). Input is already waiting when this is called, so no output
    within ``stall_s`` is that stall: the process is stopped and started again.
    ``nudge()``, when given, is called every half second while waiting (e.g. to
    send a fresh frame that is not stale on arrival). Returns the running
    process and how many restarts it took.
    """
    for attempt in range(attempts):
        proc = PipelineProcess(raw_config)
        proc.start()
        deadline = time.monotonic() + stall_s
        next_nudge = time.monotonic()
        while count() == 0 and time.monotonic() < deadline:
            proc.check_alive()
            if nudge is not None and time.monotonic() >= next_nudge:
                nudge()
                next_nudge = time.monotonic() + 0.5
            time.sleep(0.1)  # poll interval
        if count() > 0:
            return proc, attempt
        say(f"pipeline produced nothing within {stall_s:g} s (no partitions assigned?); "
            "restarting it")  # fmt: skip
        proc.stop()
    raise StreamferError(
        f"pipeline | no output after {attempts} starts of {stall_s:g} s each. "
        "Note: is the input topic there and does the pipeline log show an assignment?"
    )


def drain_rate(
    raw_config: dict[str, Any], bootstrap: str, out: str, n: int, what: str, timeout_s: float,
    say: Callable[[str], None],
) -> float:  # fmt: skip
    """Run the pipeline over a backlog already waiting until ``n`` decisions are in ``out``
    (``what`` fails when fewer come within ``timeout_s``); their rate in records/s, from the
    output's append times."""
    with OffsetProbe(bootstrap, out) as probe:
        proc, _ = start_flowing(raw_config, probe.count, say)
        try:
            got = wait_decisions(proc, probe.count, n, timeout_s)
        finally:
            proc.stop()
    if got < n:
        raise StreamferError(f"{what} | {got} of {n} decisions. Note: expected all")
    return topic_span(bootstrap, out).rate


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of ``pid``, summed by the thread's
    OS name: the pipeline names its own (``streamfer.threadnames``), librdkafka's
    ``rdk:*`` threads count as ``librdkafka``. Empty when the process is gone."""
    out: dict[str, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            seconds = stat_cpu_seconds(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        key = "librdkafka" if name.startswith("rdk:") else name
        out[key] = out.get(key, 0.0) + seconds
    return out

"""Crash safety and graceful stop of ``streamfer run`` as a real process on the real broker.

* kill -9 mid-stream, restart: every transaction has at least one decision
  (at-least-once), and exactly one committed decision in exactly-once mode;
* SIGTERM mid-stream: nothing lost, committed offsets end at the last decided record;
* a second SIGTERM during the drain: exit 143 at once, the drain left unfinished;
* SIGUSR1: every thread's stack in the log, and the run goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from e2e_helpers import (
    MODELS,
    REPO,
    committed,
    config_doc,
    decisions,
    distinct_decided,
    feeding,
    produce,
    read_all,
    transactions,
    trickle,
    wait_for,
    write_config,
)
from tiny_models import slow_sensor_model

from streamfer.streams.codecs import encode_sensor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"),
]

N = 400  # fed while the pipeline runs
WARM = 20  # produced first, to know the pipeline is up
TOTAL = N + WARM
STOP_AT = WARM + N // 4  # decisions before the kill or the stop, half of what is let through


def config(tmp_path: Path, bootstrap: str, group: str, src: str, out: str, delivery: str,
           client: str = "confluent-kafka") -> Path:  # fmt: skip
    stream = {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud", "delivery": delivery, "batching": {"max_batch": 4, "max_wait_ms": 2},
    }  # fmt: skip
    return write_config(
        tmp_path / "p.yaml", bootstrap, group, [stream], ["fraud"],
        consumer={"session_timeout_ms": 6000}, kafka={"client": client},
    )  # fmt: skip


def start_run(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamfer.pipeline.cli", "run", "-c", str(cfg)],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_warm(cfg: Path, log: Path, bootstrap: str, src: str, out: str) -> subprocess.Popen[bytes]:
    """Start ``streamfer run`` and return once it decided the first WARM records."""
    proc = start_run(cfg, log)
    with trickle(bootstrap, src, transactions(WARM, seed=1), per_s=1000):
        pass
    try:
        wait_for(lambda: distinct_decided(bootstrap, out, WARM) >= WARM, 180,
                 "the pipeline to run")  # fmt: skip
    except AssertionError:
        proc.kill()
        raise AssertionError(log.read_text()[-3000:]) from None
    return proc


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_kill_9_and_restart_loses_nothing(
    delivery: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, group = unique_topic(3), unique_topic(1), unique_group()
    cfg = config(tmp_path, kafka_bootstrap, group, src, out, delivery, client_name)
    log = tmp_path / "run.log"
    proc = start_warm(cfg, log, kafka_bootstrap, src, out)
    with feeding(kafka_bootstrap, src, transactions(N, seed=3), per_s=150) as feeder:
        feeder.allow(N // 2)  # the kill comes with about half of it decided, the rest arriving
        try:
            wait_for(lambda: distinct_decided(kafka_bootstrap, out, STOP_AT) >= STOP_AT, 120,
                     "more decisions")  # fmt: skip
        finally:
            proc.kill()  # SIGKILL: no drain, no final commit
            proc.wait(10)
        proc = start_run(cfg, log)
        feeder.allow(N)
        try:
            isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"

            def all_decided(msgs: list) -> bool:
                return len({_coords(d) for d in decisions(msgs)}) >= TOTAL

            msgs = read_all(kafka_bootstrap, out, all_decided, timeout_s=120,
                            isolation_level=isolation)  # fmt: skip
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    got = Counter(_coords(d) for d in decisions(msgs))
    missing = TOTAL - len(got)
    assert missing == 0, f"{missing} without a decision; log: {log.read_text()[-2000:]}"
    if delivery == "exactly_once":
        dupes = {c: k for c, k in got.items() if k > 1}
        assert not dupes, f"committed duplicates: {list(dupes)[:5]}"


def _coords(d: dict) -> tuple[int, int]:
    return d["source"]["partition"], d["source"]["offset"]


def test_sigusr1_prints_every_thread_stack_and_the_run_goes_on(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(1), unique_topic(1), unique_group()
    cfg = config(tmp_path, kafka_bootstrap, group, src, out, "at_least_once")
    log = tmp_path / "run.log"
    proc = start_warm(cfg, log, kafka_bootstrap, src, out)
    try:
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "_run_worker" in log.read_text(), 60, "the stack dump")
        text = log.read_text()
        assert "_consume_loop" in text and "Current thread 0x" in text, text[-3000:]
        with trickle(kafka_bootstrap, src, transactions(20, seed=5), per_s=1000):
            pass
        wait_for(lambda: distinct_decided(kafka_bootstrap, out, WARM + 20) >= WARM + 20, 120,
                 "decisions after the dump")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-2000:]


def test_sigterm_drains_and_commits_at_the_last_decided_record(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, group = unique_topic(3), unique_topic(1), unique_group()
    cfg = config(tmp_path, kafka_bootstrap, group, src, out, "at_least_once", client_name)
    log = tmp_path / "run.log"
    proc = start_warm(cfg, log, kafka_bootstrap, src, out)
    with feeding(kafka_bootstrap, src, transactions(N, seed=3), per_s=150) as feeder:
        feeder.allow(N // 2)  # the stop comes with about half of it decided
        wait_for(lambda: distinct_decided(kafka_bootstrap, out, STOP_AT) >= STOP_AT, 120,
                 "more decisions")  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-2000:]
    ends = committed(kafka_bootstrap, group, src)
    total = sum(ends.values())
    assert STOP_AT <= total <= WARM + N // 2, (total, "the stop should have come mid-stream")
    msgs = read_all(kafka_bootstrap, out, lambda m: len(m) >= total, timeout_s=60)
    by_partition: dict[int, list[int]] = {}
    for d in decisions(msgs):
        by_partition.setdefault(d["source"]["partition"], []).append(d["source"]["offset"])
    for p, end in ends.items():
        offsets = sorted(by_partition.get(p, []))
        # every record below the commit was decided once, and nothing past it
        assert offsets == list(range(end)), (p, end, offsets[-5:])
    assert os.path.exists(log)


def _free_port_pair() -> int:
    """A port p with p and p + 1 free right now (worker i serves on p + i)."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return int(port)
    raise AssertionError("no free port pair")


def _ready(port: int) -> bool:
    from urllib.error import URLError
    from urllib.request import urlopen

    try:
        return bool(urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200)
    except (URLError, OSError):
        return False


def test_two_workers_share_the_partitions(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(4), unique_topic(1), unique_group()
    port = _free_port_pair()
    stream = {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud",
    }  # fmt: skip
    cfg = write_config(
        tmp_path / "p.yaml", kafka_bootstrap, group, [stream], ["fraud"],
        metrics={"enabled": True, "port": port, "host": "127.0.0.1"},
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamfer.pipeline.cli", "run", "-c", str(cfg), "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # each worker is ready only once it holds partitions of the shared group
        wait_for(lambda: _ready(port) and _ready(port + 1), 180, "both workers ready")
        with trickle(kafka_bootstrap, src, transactions(200, seed=3), per_s=2000):
            pass
        msgs = read_all(kafka_bootstrap, out, lambda m: len(m) >= 200, timeout_s=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    text = output.decode()
    assert proc.returncode == 0, text[-2000:]
    assert len({_coords(d) for d in decisions(msgs)}) == 200
    consumed = [int(line.split("consumed ")[1].split(",")[0]) for line in text.splitlines()
                if line.startswith("payments: consumed")]  # fmt: skip
    assert len(consumed) == 2 and all(c > 0 for c in consumed) and sum(consumed) >= 200, text


def test_a_second_sigterm_exits_at_once_without_finishing_the_drain(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    """The drain is made long on purpose, by compute rather than timing luck.

    The model is ``slow_sensor_model`` (200 dense layers: about 17 ms a window on
    an idle core, one intra-op thread) and batches hold one window, so the
    windows in flight at the first signal (the first poll alone takes 500) need
    many seconds to drain, more on a loaded machine; the second signal follows
    within a second of the first.
    """
    src, out, group = unique_topic(1), unique_topic(1), unique_group()
    rng = np.random.default_rng(5)
    n = produce(kafka_bootstrap, src, [
        (b"v-1", *encode_sensor(rng.normal(size=(100, 6)).astype(np.float32)))
        for _ in range(1000)
    ])  # fmt: skip
    stream = {
        "name": "imu", "kind": "sensor", "input_topic": src, "output_topic": out,
        "model": "sensor", "batching": {"max_batch": 1, "max_wait_ms": 0},
    }  # fmt: skip
    model = slow_sensor_model(tmp_path / "slow.onnx", layers=200)
    doc = config_doc(kafka_bootstrap, group, [stream], {"sensor": model},
                     runtime={"drain_timeout_s": 300})  # fmt: skip
    doc["models"]["sensor"]["intra_op_threads"] = 1
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    log = tmp_path / "run.log"
    proc = start_run(cfg, log)
    try:
        # records are in flight once the first of them is committed (a loaded machine
        # takes long to start the run: the deadline is for a run that never commits)
        try:
            wait_for(lambda: sum(committed(kafka_bootstrap, group, src).values()) > 0, 180,
                     "the first commit")  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log: {log.read_text()[-3000:]}") from None
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping: finishing records in flight" in log.read_text(), 30,
                 "the drain to begin")  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)  # at once, on a loaded machine; the exit code says the rest
        except subprocess.TimeoutExpired:
            text = log.read_text()[-2000:]
            raise AssertionError(f"still running 15 s after the second signal: {text}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert code == 128 + signal.SIGTERM, text[-2000:]
    assert "second signal: exiting without draining" in text
    assert sum(committed(kafka_bootstrap, group, src).values()) < n  # the drain did not finish

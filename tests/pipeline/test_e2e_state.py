"""Per-key state across crashes and rebalances, end to end on the real broker.

A transaction stream with repeat cards is scored once by a pipeline that is
never interrupted (state in memory, as without the store) and once by a
pipeline with ``state.enabled`` that is killed with SIGKILL three times
mid-stream, or that a second worker joins and leaves mid-stream. The input is
let through in steps and each step waits on what the runs log and decide
(restores, distinct decisions), never on the clock. The
decisions per transaction must be the same (scores within 1e-6): exactly
one per transaction with exactly-once delivery, at least one with
at-least-once (duplicates carrying the same score). Without the store, the
first decision after a restart of every card would read ``first_seen``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    MODELS,
    REPO,
    decisions,
    distinct_decided,
    feeding,
    produce,
    read_all,
    restored_partitions,
    transactions,
    wait_for,
    write_config,
)

from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"),
]

N = 1200
CARDS = 40  # about 30 transactions a card: every card's history matters
Coords = tuple[int, int]


def messages(n: int = N, seed: int = 11) -> list[tuple[bytes | None, bytes, list[Any]]]:
    return transactions(n, seed, n_cards=CARDS)


def stream(src: str, out: str, delivery: str, state_dir: Path | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud", "delivery": delivery, "batching": {"max_batch": 8, "max_wait_ms": 2},
    }  # fmt: skip
    if state_dir is not None:
        doc["state"] = {"enabled": True, "dir": str(state_dir)}
    return doc


def config(path: Path, bootstrap: str, group: str, doc: dict[str, Any]) -> Path:
    return write_config(path, bootstrap, group, [doc], ["fraud"],
                        consumer={"session_timeout_ms": 6000, "max_poll_records": 50})  # fmt: skip


def scores(msgs: list[Any]) -> dict[Coords, list[float]]:
    out: dict[Coords, list[float]] = {}
    for d in decisions(msgs):
        src = d["source"]
        out.setdefault((src["partition"], src["offset"]), []).append(d["result"]["fraud_score"])
    return out


def read_scores(bootstrap: str, topic: str, n: int, delivery: str) -> dict[Coords, list[float]]:
    isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
    msgs = read_all(bootstrap, topic, lambda m: len(scores(m)) >= n, timeout_s=120,
                    isolation_level=isolation)  # fmt: skip
    return scores(msgs)


def reference(tmp_path: Path, bootstrap: str, src: str, n: int,
              unique_topic: Callable[..., str], group: str) -> dict[Coords, float]:  # fmt: skip
    """One uninterrupted run over the whole input, state in memory only."""
    out = unique_topic(1)
    cfg = config(tmp_path / "ref.yaml", bootstrap, group, stream(src, out, "at_least_once", None))
    with Pipeline(load_config(cfg), serve_http=False) as pipe:
        pipe.wait_ready(60)
        wait_for(lambda: pipe.stats()["payments"].resolved >= n, 180, "the reference run")
    got = read_scores(bootstrap, out, n, "at_least_once")
    assert all(len(v) == 1 for v in got.values())
    return {c: v[0] for c, v in got.items()}


def assert_same_decisions(got: dict[Coords, list[float]], ref: dict[Coords, float],
                          delivery: str) -> None:  # fmt: skip
    assert set(got) == set(ref), f"{len(set(ref) - set(got))} transactions without a decision"
    wrong = {c: (v, ref[c]) for c, v in got.items() if any(abs(s - ref[c]) > 1e-6 for s in v)}
    assert not wrong, f"{len(wrong)} decisions differ from the uninterrupted run: {wrong}"
    if delivery == "exactly_once":
        dupes = [c for c, v in got.items() if len(v) > 1]
        assert not dupes, f"committed duplicates: {dupes[:5]}"


def start_run(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamfer.pipeline.cli", "-v", "run", "-c", str(cfg)],
        cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


def stuck(proc: subprocess.Popen[bytes], log: Path, why: str) -> AssertionError:
    """What a run that stopped deciding was doing: alive or not, and its threads' stacks
    (``streamfer run`` prints them on SIGUSR1)."""
    if proc.poll() is not None:
        return AssertionError(f"{why}; the run exited with {proc.returncode}; "
                              f"log: {log.read_text()[-4000:]}")  # fmt: skip
    proc.send_signal(signal.SIGUSR1)
    with contextlib.suppress(AssertionError):  # without the dump, the log says what it says
        wait_for(lambda: "Thread 0x" in log.read_text(), 30, "the stack dump")
    return AssertionError(f"{why}; the run is alive; log: {log.read_text()[-12000:]}")


def wait_restored(proc: subprocess.Popen[bytes], log: Path, since: int, topic: str,
                  partitions: int) -> None:  # fmt: skip
    """Until the run started when ``log`` was ``since`` bytes long says it restored every
    partition of ``topic`` from the changelog (after a kill -9 no checkpoint is left)."""

    def done() -> bool:
        text = log.read_bytes()[since:].decode(errors="replace")
        return len(restored_partitions(text, topic, "changelog")) == partitions

    try:
        wait_for(lambda: proc.poll() is not None or done(), 120, "every partition restored")
    except AssertionError as exc:
        raise stuck(proc, log, str(exc)) from None
    if not done():
        raise stuck(proc, log, "the run exited before restoring")


PARTITIONS = 3
STEP = N // 4  # input let through per run: a run is killed halfway through its step


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_kill_9_three_times_gives_the_uninterrupted_decisions(
    delivery: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    """Each run restores every partition before it may be killed, and is killed after
    deciding at least STEP / 2 records no run before it decided, while the input it
    was let through (paced) still arrives: no step depends on how fast the machine is."""
    src, out, group = unique_topic(PARTITIONS), unique_topic(1), unique_group()
    cfg = config(tmp_path / "p.yaml", kafka_bootstrap, group,
                 stream(src, out, delivery, tmp_path / "state"))  # fmt: skip
    log = tmp_path / "run.log"
    log.touch()
    proc = start_run(cfg, log)
    since = 0
    try:
        with feeding(kafka_bootstrap, src, messages(), per_s=100) as feeder:
            for run in range(3):
                wait_restored(proc, log, since, src, PARTITIONS)
                feeder.allow((run + 1) * STEP)
                target = run * STEP + STEP // 2  # >= STEP / 2 past the previous kill
                try:
                    wait_for(lambda t=target: distinct_decided(kafka_bootstrap, out, t) >= t,
                             120, f"{target} decisions")  # fmt: skip
                except AssertionError as exc:
                    have = distinct_decided(kafka_bootstrap, out, target)
                    raise stuck(proc, log, f"{exc} ({have} read)") from None
                proc.kill()  # SIGKILL: no drain, no final commit, no checkpoint
                proc.wait(10)
                since = log.stat().st_size
                proc = start_run(cfg, log)
            wait_restored(proc, log, since, src, PARTITIONS)
            feeder.allow(N)
            got = read_scores(kafka_bootstrap, out, N, delivery)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    ref = reference(tmp_path, kafka_bootstrap, src, N, unique_topic, unique_group())
    assert_same_decisions(got, ref, delivery)


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_a_worker_joining_and_leaving_gives_the_uninterrupted_decisions(
    delivery: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The input goes on in steps: a quarter before the second worker joins, a quarter
    once it holds partitions (so it decides some), a quarter after it left and the
    first worker restored what it took back, then the rest."""
    src, out, group = unique_topic(PARTITIONS), unique_topic(1), unique_group()
    cfg = load_config(config(tmp_path / "p.yaml", kafka_bootstrap, group,
                             stream(src, out, delivery, tmp_path / "state")))  # fmt: skip
    caplog.set_level("INFO", logger="streamfer.streams.state.manager")

    def restores() -> list[tuple[int | None, int, str]]:
        """(thread, partition, message) of each restore so far, in order."""
        out = []
        for r in caplog.records:
            msg = r.getMessage()
            for p in restored_partitions(msg, src):
                out.append((r.thread, p, msg))
        return out

    def decided(n: int) -> Callable[[], bool]:
        return lambda: distinct_decided(kafka_bootstrap, out, n) >= n

    def taken_back(second: int | None) -> bool:
        """Every partition the second worker restored was restored again after that by
        another thread: the first worker took it back."""
        seen = restores()
        last = {p: i for i, (t, p, _) in enumerate(seen) if t == second}
        return bool(last) and all(
            any(t != second and q == p for t, q, _ in seen[i + 1 :]) for p, i in last.items()
        )

    with Pipeline(cfg, serve_http=False) as first, \
            feeding(kafka_bootstrap, src, messages(), per_s=100) as feeder:  # fmt: skip
        first.wait_ready(60)
        wait_for(lambda: len(restores()) >= PARTITIONS, 120, "the first worker's restores")
        feeder.allow(N // 4)
        wait_for(decided(N // 4), 120, "a quarter")
        known = {t for t, _, _ in restores()}
        with Pipeline(cfg, worker_index=1, serve_http=False) as second:
            second.wait_ready(120)  # it holds partitions of the group
            feeder.allow(N // 2)
            wait_for(lambda: second.stats()["payments"].resolved > 0, 120,
                     "the second worker to decide")  # fmt: skip
            wait_for(decided(N // 2), 120, "half")
            joiner = {t for t, _, _ in restores()} - known
        assert len(joiner) == 1, restores()  # the second worker's consumer thread
        second_thread = joiner.pop()
        wait_for(lambda: taken_back(second_thread), 120, "the first worker to take them back")
        feeder.allow(3 * N // 4)
        wait_for(decided(3 * N // 4), 120, "three quarters")
        feeder.allow(N)
        got = read_scores(kafka_bootstrap, out, N, delivery)
    print("\n".join(m for _, _, m in restores()))
    # the joiner rebuilt what it took from the changelog (only the first worker wrote it)
    joined = [m for t, _, m in restores() if t == second_thread]
    assert any("restored from changelog" in m and " 0 keys" not in m for m in joined), joined
    ref = reference(tmp_path, kafka_bootstrap, src, N, unique_topic, unique_group())
    assert_same_decisions(got, ref, delivery)


def test_restore_after_deleting_the_local_state_rebuilds_from_the_changelog(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    src, out, group = unique_topic(3), unique_topic(1), unique_group()
    state = tmp_path / "state"
    cfg = load_config(config(tmp_path / "p.yaml", kafka_bootstrap, group,
                             stream(src, out, "at_least_once", state)))  # fmt: skip
    msgs = messages(600)
    produce(kafka_bootstrap, src, msgs[:300])
    with Pipeline(cfg, serve_http=False) as pipe:
        pipe.wait_ready(60)
        wait_for(lambda: pipe.stats()["payments"].resolved >= 300, 120, "the first half")
    assert any(state.rglob("data.mdb"))
    shutil.rmtree(state)
    produce(kafka_bootstrap, src, msgs[300:])
    caplog.set_level("INFO", logger="streamfer.streams.state.manager")
    with Pipeline(cfg, serve_http=False) as pipe:
        pipe.wait_ready(60)
        wait_for(lambda: pipe.stats()["payments"].resolved >= 300, 120, "the second half")
    restores = [r.getMessage() for r in caplog.records if "state restored from" in r.getMessage()]
    assert len(restores) == 3 and all("from changelog" in m for m in restores), restores
    restored_keys = sum(int(m.split(": ")[1].split(" keys")[0].replace(",", "")) for m in restores)
    assert restored_keys == CARDS  # every card seen in the first half, none twice
    got = read_scores(kafka_bootstrap, out, 600, "at_least_once")
    ref = reference(tmp_path, kafka_bootstrap, src, 600, unique_topic, unique_group())
    assert_same_decisions(got, ref, "at_least_once")

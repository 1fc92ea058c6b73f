"""Scaling out as Kafka applications do: more ``streamfer run`` processes in one group.

* a member without partitions (more members than the input has partitions) is
  ready and idle, says so once, and exports ``streamfer_partitions_assigned`` 0;
* ``streamfer_consumer_lag_records`` and ``streamfer_consumer_lag_seconds`` follow a
  backlog held back by the engine and read 0 once caught up, also under exactly-once
  where transaction markers take offsets that are never consumed;
* three processes join a six-partition stream one by one and leave (SIGTERM, then
  kill -9) while records keep coming: every record is decided, exactly once under
  exactly-once, with the fraud scores of an uninterrupted run (state store on).

Every step waits for what it needs (assignments, restores, readiness, counts of new
decisions) with a deadline; nothing depends on when a signal lands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer
from e2e_helpers import (
    MODELS,
    committed,
    produce,
    transactions,
    trickle,
    wait_for,
    write_config,
)
from kafka import KafkaConsumer, TopicPartition
from scale_helpers import OutputReader, Worker
from test_e2e_state import reference

from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config
from streamfer.streams.admin import topic_partitions

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"),
]

CARDS = 40


def payments(src: str, out: str, delivery: str, state_dir: Path | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud", "delivery": delivery, "batching": {"max_batch": 8, "max_wait_ms": 2},
    }  # fmt: skip
    if state_dir is not None:
        doc["state"] = {"enabled": True, "dir": str(state_dir)}
    return doc


def run_config(path: Path, bootstrap: str, group: str, doc: dict[str, Any], port: int) -> Path:
    return write_config(
        path, bootstrap, group, [doc], ["fraud"],
        consumer={"session_timeout_ms": 6000, "max_poll_records": 50},
        metrics={"enabled": True, "port": port, "host": "127.0.0.1"},
    )  # fmt: skip


# -- an idle member is ready ---------------------------------------------------------------


def test_a_member_without_partitions_is_ready_and_idle(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    free_ports: Callable[[int], int],
) -> None:
    src, out, group = unique_topic(1), unique_topic(1), unique_group()
    port = free_ports(2)
    cfg = run_config(tmp_path / "p.yaml", kafka_bootstrap, group,
                     payments(src, out, "at_least_once"), port)  # fmt: skip
    with ExitStack() as stack:
        workers = []
        for i in range(2):
            w = Worker.start(cfg, i, port, tmp_path)
            stack.callback(w.terminate)
            workers.append(w)
        wait_for(lambda: all(w.ready() for w in workers), 90, "both workers ready")
        wait_for(lambda: sorted(w.assigned() or 0 for w in workers) == [0, 1], 60,
                 "one partition on one worker")  # fmt: skip
        idle = next(w for w in workers if w.assigned() == 0)
        busy = next(w for w in workers if w is not idle)
        code, body = idle.readyz()
        assert code == 200, body
        assert busy.ready()
        line = f"payments | no partitions assigned: idle (the group {group} has more members "
        wait_for(lambda: line in idle.text(), 10, "the idle line in the log")
        assert f"than {src} has partitions (1))" in idle.text()
        assert idle.text().count("no partitions assigned") == 1
        assert "no partitions assigned" not in busy.text()
        # the idle one does work once the busy one leaves
        assert busy.terminate() == 0
        wait_for(lambda: idle.assigned() == 1, 60, "the partition to move to the idle worker")
        produce(kafka_bootstrap, src, transactions(20, seed=3, n_cards=CARDS))
        wait_for(lambda: sum(idle.metric("streamfer_records_consumed_total").values()) >= 1,
                 60, "the former idle worker to consume")  # fmt: skip
        assert idle.ready()


def test_an_idle_member_is_ready_with_either_client(
    client_name: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    """Each client reports an empty assignment, so a spare member knows it joined."""
    src, out, group = unique_topic(1), unique_topic(1), unique_group()
    cfg = load_config(write_config(
        tmp_path / "p.yaml", kafka_bootstrap, group, [payments(src, out, "at_least_once")],
        ["fraud"], kafka={"client": client_name}, metrics={"enabled": True},
    ))  # fmt: skip
    labels = {"stream": "payments", "model": "fraud", "engine": "onnxruntime"}

    def assigned(pipe: Pipeline) -> float | None:
        return pipe.metrics.registry.get_sample_value("streamfer_partitions_assigned", labels)

    with Pipeline(cfg, serve_http=False) as first:
        first.wait_ready(60)
        wait_for(lambda: assigned(first) == 1, 30, "the partition on the first member")
        with Pipeline(cfg, worker_index=1, serve_http=False) as second:
            second.wait_ready(60)
            wait_for(lambda: assigned(second) == 0 and assigned(first) == 1, 30,
                     "the second member idle")  # fmt: skip
            assert first.ready and second.ready


# -- lag --------------------------------------------------------------------------------------


class GatedRunner(OnnxRuntimeRunner):
    """ONNX Runtime that infers only while ``gate`` is set (the engine held back)."""

    def __init__(self, path: Path, gate: threading.Event) -> None:
        super().__init__(path, max_batch=32)
        self.gate = gate

    def _infer_impl(self, feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        if not self.gate.wait(120):  # bounded: a test that forgot the gate fails, never hangs
            raise TimeoutError("gate never opened")
        return super()._infer_impl(feeds, batch)


def lag_of(pipe: Pipeline, name: str) -> dict[str, float]:
    """``{partition: value}`` of one lag family of the stream ``payments``."""
    out = {}
    for family in pipe.metrics.registry.collect():
        for s in family.samples:
            if s.name == name and s.labels.get("stream") == "payments":
                out[s.labels["partition"]] = s.value
    return out


def produce_in_transactions(bootstrap: str, topic: str, n: int, per_txn: int) -> None:
    """``n`` transactions in Kafka transactions of ``per_txn``: each ends with a marker."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(30)
    msgs = transactions(n, seed=5, n_cards=CARDS)
    for start in range(0, n, per_txn):
        producer.begin_transaction()
        for key, value, _ in msgs[start:start + per_txn]:
            producer.produce(topic, value=value, key=key)
        producer.commit_transaction(30)


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_lag_follows_a_held_back_engine_and_reads_zero_when_caught_up(
    delivery: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(1), unique_topic(1), unique_group()
    n = 300
    if delivery == "exactly_once":  # markers after every 50 records: 6 offsets never consumed
        produce_in_transactions(kafka_bootstrap, src, n, per_txn=50)
    else:
        produce(kafka_bootstrap, src, transactions(n, seed=5, n_cards=CARDS))
    cfg = load_config(write_config(
        tmp_path / "p.yaml", kafka_bootstrap, group, [payments(src, out, delivery)], ["fraud"],
        consumer={"max_poll_records": 20},
        # commits rare: an exactly-once commit waits (on the consumer thread, which also
        # exports lag) for every polled record, and the engine is held back on purpose
        runtime={"max_in_flight": 40, "commit_interval_ms": 60_000},
        metrics={"enabled": True},
    ))  # fmt: skip
    gate = threading.Event()
    runner = GatedRunner(MODELS / "fraud.onnx", gate)
    with Pipeline(cfg, serve_http=False, runners={"fraud": runner}) as pipe:
        pipe.wait_ready(30)
        # held back: the engine's queue fills, the rest waits in the topic
        wait_for(lambda: lag_of(pipe, "streamfer_consumer_lag_records").get("0", 0) > 100, 30,
                 "a backlog in records")  # fmt: skip
        wait_for(lambda: lag_of(pipe, "streamfer_consumer_lag_seconds").get("0", 0) > 0, 30,
                 "an age for the oldest record in flight")  # fmt: skip
        first = lag_of(pipe, "streamfer_consumer_lag_seconds")["0"]
        wait_for(lambda: lag_of(pipe, "streamfer_consumer_lag_seconds")["0"] >= first + 1.0, 30,
                 "the age to grow while nothing resolves")  # fmt: skip
        assert pipe.stats()["payments"].resolved == 0
        assigned = pipe.metrics.registry.get_sample_value(
            "streamfer_partitions_assigned",
            {"stream": "payments", "model": "fraud", "engine": "onnxruntime"},
        )
        assert assigned == 1
        gate.set()
        wait_for(lambda: pipe.stats()["payments"].resolved >= n, 60, "every record resolved")
        wait_for(lambda: lag_of(pipe, "streamfer_consumer_lag_records") == {"0": 0.0}
                 and lag_of(pipe, "streamfer_consumer_lag_seconds") == {"0": 0.0}, 10,
                 "both lags at 0")  # fmt: skip
    if delivery == "exactly_once":  # what a lag from the committed offset would say: 1
        end = _high_watermark(kafka_bootstrap, src)
        assert end - committed(kafka_bootstrap, group, src)[0] == 1, "a marker after the last"


def _high_watermark(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


# -- scale out and in ------------------------------------------------------------------------

N = 1500
STEPS = 6  # joins of 2 and 3, SIGTERM, kill -9, and the ends: decisions keep coming at each


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        if w.alive():
            w.terminate()


def settled(live: list[Worker], partitions: int) -> bool:
    """Every live worker ready, the partitions spread over them, none on two."""
    counts = [w.assigned() for w in live]
    if any(c is None for c in counts) or sum(c or 0 for c in counts) != partitions:
        return False
    spread = partitions // len(live)
    return all(c in (spread, spread + 1) for c in counts) and all(w.ready() for w in live)


@pytest.mark.parametrize("delivery", ["exactly_once", "at_least_once"])
def test_three_workers_join_and_leave_without_losing_or_repeating_a_decision(
    delivery: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    free_ports: Callable[[int], int],
    workers: list[Worker],
) -> None:
    src, out, group = unique_topic(6), unique_topic(1), unique_group()
    assert topic_partitions(kafka_bootstrap, [src]) == {src: 6}
    port = free_ports(3)
    cfg = run_config(tmp_path / "p.yaml", kafka_bootstrap, group,
                     payments(src, out, delivery, tmp_path / "state"), port)  # fmt: skip
    isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
    step = N // STEPS
    with OutputReader(kafka_bootstrap, out, isolation) as reader, \
            trickle(kafka_bootstrap, src, transactions(N, seed=11, n_cards=CARDS), per_s=60):

        def more_decisions(why: str) -> None:
            target = reader.decided() + step
            live = [w for w in workers if w.alive()]
            try:
                wait_for(lambda: reader.decided() >= min(target, N), 90,
                         f"{step} more decisions after {why}")  # fmt: skip
            except AssertionError as exc:
                logs = "\n".join(f"--- w{w.index}\n{w.text()[-3000:]}" for w in live)
                raise AssertionError(f"{exc}; {reader.decided()} decided\n{logs}") from None

        def join(index: int) -> None:
            workers.append(Worker.start(cfg, index, port, tmp_path))
            live = [w for w in workers if w.alive()]
            wait_for(lambda: settled(live, 6), 90, f"worker {index} in, partitions settled")

        join(0)
        more_decisions("worker 0 started")
        join(1)
        more_decisions("worker 1 joined")
        join(2)
        more_decisions("worker 2 joined")
        assert workers[1].terminate() == 0  # SIGTERM: drains, commits, leaves the group
        wait_for(lambda: settled([workers[0], workers[2]], 6), 60, "settled after SIGTERM")
        more_decisions("worker 1 left (SIGTERM)")
        workers[2].kill()  # kill -9: no drain, no commit; its partitions wait for the session
        wait_for(lambda: settled([workers[0]], 6), 60, "settled after kill -9")
        more_decisions("worker 2 killed")
        wait_for(lambda: reader.decided() >= N, 120, "every record decided")
        got = reader.scores
    restores = workers[0].text().count("state restored from")
    assert restores >= 6 + 3, restores  # its first 6, then what came back from 1 and 2
    ref = reference(tmp_path, kafka_bootstrap, src, N, unique_topic, unique_group())
    assert set(got) == set(ref), f"{len(set(ref) - set(got))} transactions without a decision"
    wrong = {c: (v, ref[c]) for c, v in got.items() if any(abs(s - ref[c]) > 1e-6 for s in v)}
    assert not wrong, f"{len(wrong)} decisions differ from the uninterrupted run"
    if delivery == "exactly_once":
        dupes = [c for c, v in got.items() if len(v) > 1]
        assert not dupes, f"committed duplicates: {dupes[:5]}"

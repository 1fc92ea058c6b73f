"""The models benchmark's traffic: its load and the read-back of its decisions.

The load is open-loop Poisson transactions over every partition of the input
topic, sent from their own process; each record's timestamp is its *scheduled*
send time, so a decision's end-to-end latency (record timestamp -> decision
LogAppendTime, both wall clock, ms) also counts any wait of the generator (no
coordinated omission). The read-back takes every decision with its source
partition and offset, model version, append time and the stages it timed
itself (``read_committed`` when asked, for exactly-once runs).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Producer
from confluent_kafka import TopicPartition as CTP

from streamfer.bench.loadgen import _resolve, _wait_until, readback_consumer
from streamfer.errors import StreamError

POOL = "streamfer.bench.records:transaction_pool"
POOL_SIZE = 20_000
# the stages a decision times itself, then its batch size
STAGES = ("broker", "queue", "preprocess", "infer", "postprocess", "batch_size")


# --- load: Poisson arrivals over every partition, timestamp = scheduled time -------------


@dataclass(frozen=True)
class Load:
    bootstrap: str
    topic: str
    rate: float
    n: int
    seed: int = 0


def _generate(load: Load, conn: Any) -> None:
    """Child process body: send ``n`` transactions at their scheduled (Poisson) times."""
    try:
        pool = _resolve(POOL)(min(POOL_SIZE, load.n), load.seed)
        assert isinstance(pool, list)
        producer = Producer({
            "bootstrap.servers": load.bootstrap, "client.id": "streamfer-bench-models-load",
            "linger.ms": 0, "enable.idempotence": True,
            "queue.buffering.max.messages": 2_000_000,
        })  # fmt: skip
        producer.list_topics(load.topic, timeout=30)
        gaps = np.random.default_rng(load.seed + 7).exponential(1e9 / load.rate, load.n)
        wall_minus_mono = time.time_ns() - time.monotonic_ns()
        conn.send("ready")
        t0 = int(conn.recv())
        sched = (t0 + np.cumsum(gaps.astype(np.int64)) - int(gaps[0])).tolist()
        late_ns = 0
        for i, s in enumerate(sched):
            _wait_until(s)
            late_ns = max(late_ns, time.monotonic_ns() - s)
            key, value, _ = pool[i % len(pool)]
            while True:
                try:
                    producer.produce(load.topic, value, key,
                                     timestamp=(s + wall_minus_mono) // 1_000_000)  # fmt: skip
                    break
                except BufferError:
                    producer.poll(0.01)
            if i % 500 == 499:
                producer.poll(0)
        if producer.flush(60):
            raise StreamError(f"{load.topic} | records still unacknowledged after 60 s")
        conn.send(("ok", late_ns))
    except BaseException as exc:  # the parent re-raises it with context
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Generator:
    """The load in its own process: ``start()`` returns the wall-clock ns of t0."""

    def __init__(self, load: Load) -> None:
        self.load = load
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_generate, args=(load, child), daemon=True,
                                 name="bench-models-load")  # fmt: skip

    def start(self) -> int:
        self._proc.start()
        deadline = time.monotonic() + 120
        while not self._conn.poll(0.2):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                raise StreamError(f"{self.load.topic} | load generator not ready")
        msg = self._conn.recv()
        if msg != "ready":
            raise StreamError(f"{self.load.topic} | load generator failed: {msg[1]}")
        lead_ns = 200_000_000
        self._conn.send(time.monotonic_ns() + lead_ns)
        return time.time_ns() + lead_ns

    def finish(self) -> float:
        """Wait for the last send; returns how late the generator ever was (ms)."""
        deadline = time.monotonic() + self.load.n / self.load.rate + 90
        try:
            while not self._conn.poll(0.2):
                if time.monotonic() > deadline or not self._proc.is_alive():
                    raise StreamError(f"{self.load.topic} | load generator stopped answering")
            status, detail = self._conn.recv()
            if status != "ok":
                raise StreamError(f"{self.load.topic} | load generator failed: {detail}")
            return float(detail) / 1e6
        finally:
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.terminate()


# --- read-back: every decision with its source coordinates, version and append time ------


@dataclass(frozen=True)
class Decided:
    partition: int  # source partition and offset
    offset: int
    version: str
    append_ms: int  # the decision's LogAppendTime
    stages_ms: tuple[float, ...] = ()  # its own latency_ms and batch_size, in STAGES order


class Collector:
    """Reads a decisions topic from the beginning in a thread (read_committed if asked)."""

    def __init__(self, bootstrap: str, topic: str, committed: bool) -> None:
        self.bootstrap, self.topic, self.committed = bootstrap, topic, committed
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.got: list[Decided] = []
        self._keys: set[tuple[int, int]] = set()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-models-read", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._failure is not None:
            raise StreamError(f"{self.topic} | read-back consumer not ready within 30 s")

    def _run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # count() raises it in the benchmark's thread
            self._failure = exc
            self._ready.set()

    def _check(self) -> None:
        if self._failure is not None:
            raise StreamError(f"{self.topic} | read-back failed: {self._failure!r}")

    def _read(self) -> None:
        isolation = "read_committed" if self.committed else "read_uncommitted"
        consumer = readback_consumer(self.bootstrap, self.topic, {"isolation.level": isolation})
        try:
            self._ready.set()
            while not self._stop.is_set():
                batch = []
                for m in consumer.consume(5_000, 0.05):
                    if m.error() is not None:
                        continue
                    d = json.loads(m.value() or b"{}")
                    src = d["source"]
                    lat = d.get("latency_ms") or {}
                    batch.append(
                        Decided(
                            int(src["partition"]),
                            int(src["offset"]),
                            str(d["model"]["version"]),
                            int(m.timestamp()[1]),
                            tuple(_ms(lat.get(k, d.get(k))) for k in STAGES),
                        )
                    )
                if batch:
                    with self._lock:
                        self.got.extend(batch)
                        self._keys.update((b.partition, b.offset) for b in batch)
        finally:
            consumer.close()

    def distinct(self) -> int:
        self._check()
        with self._lock:
            return len(self._keys)

    def count(self) -> int:
        self._check()
        with self._lock:
            return len(self.got)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _ms(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def input_stamps(bootstrap: str, topic: str) -> dict[tuple[int, int], int]:
    """(partition, offset) -> record timestamp (ms) of every record in ``topic``."""
    consumer = readback_consumer(bootstrap, topic, {})
    out: dict[tuple[int, int], int] = {}
    try:
        ends = [consumer.get_watermark_offsets(CTP(topic, tp.partition), timeout=10)[1]
                for tp in consumer.assignment()]  # fmt: skip
        want = sum(ends)
        deadline = time.monotonic() + 60
        while len(out) < want and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.2):
                if m.error() is None:
                    out[(int(m.partition() or 0), int(m.offset() or 0))] = int(m.timestamp()[1])
    finally:
        consumer.close()
    return out

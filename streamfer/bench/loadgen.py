"""Open-loop Poisson load (after MLPerf LoadGen's Server scenario) and decision read-back.

The generator runs in its own process so its pacing never waits on the
reader or the pipeline for the GIL. It sends record ``i`` at its *scheduled*
time ``t0 + sum(gaps[:i])`` (exponential gaps), late if it must, never
skipping: a slow system under test cannot slow the arrivals down, so queueing
shows up as latency (no coordinated omission). Latency is measured from that
scheduled time to the moment the reader in the parent process gets the
decision, both on ``time.monotonic_ns()`` (one clock for the whole machine).

The input topic has one partition and a fresh idempotent producer, so record
``i`` lands at offset ``base + i``; the generator checks that with the first
and last acks and the parent maps each decision back through its source offset.
Both ends use librdkafka (confluent-kafka): at tens of thousands of records a
second the load generator and the reader must cost the machine little next to
the system under test.
"""

from __future__ import annotations

import importlib
import json
import math
import multiprocessing as mp
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer
from confluent_kafka import TopicPartition as CTP

from streamfer.bench.kafka_io import Headers
from streamfer.errors import StreamError

_SOURCE_RE = re.compile(rb'"partition":\s*(\d+),\s*"offset":\s*(\d+)')
PoolItem = tuple[bytes | None, bytes, Headers]
# (pool item, scheduled wall-clock ns, sequence number) -> headers to send
HeaderHook = Callable[[PoolItem, int, int], Headers]


@dataclass(frozen=True)
class LoadSpec:
    """One point of the ladder; ``pool`` is ``"module:function"`` taking (size, seed)."""

    bootstrap: str
    topic: str
    rate: float
    n: int
    pool: str
    pool_size: int
    seed: int = 0
    header_hook: str | None = None  # "module:function" (see HeaderHook), e.g. capture time
    linger_ms: int = 0


@dataclass(frozen=True)
class LoadOutcome:
    sched_ns: np.ndarray  # int64 [n], monotonic
    sent_late_ns: np.ndarray  # int64 [n], actual send call minus schedule
    base_offset: int
    stage_ms: dict[str, np.ndarray]  # the decisions' own latency_ms per stage
    settled: bool = True  # nothing left in flight before the next point
    generator_cpu_s: float = math.nan  # the generator process's CPU from t0 to its last ack


def _resolve(ref: str) -> Callable[..., object]:
    module, attr = ref.split(":")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise TypeError(f"{ref} | not callable")
    return fn  # type: ignore[no-any-return]


def _wait_until(t_ns: int) -> None:
    # Sleep, never spin: a spinning thread holds the GIL and starves the
    # producer's network thread for a whole switch interval (5 ms).
    left = t_ns - time.monotonic_ns()
    if left > 0:
        time.sleep(left / 1e9)


def _warm(producer: Producer, topic: str, item: Any, hook: Callable[..., Any] | None) -> None:
    """One record sent and acknowledged before t0.

    A fresh producer's first send waits for its idempotent producer id and for its own
    connection to the partition leader (metadata came over the bootstrap connection):
    hundreds of ms on a local broker. Sent on schedule, the first records of every point
    would carry that as latency, enough alone to set the p99 of a short point at a low
    rate. The record lands just before the point's first offset, and its decision maps
    to no record of the point.
    """
    key, value, headers = item
    if hook is not None:
        headers = hook(item, time.time_ns(), 0)  # a valid frame-seq: 0 to 2^63-1
    acked: list[object] = []
    producer.produce(topic, value, key, partition=0, headers=headers or None,
                     on_delivery=lambda err, _msg: acked.append(err))  # fmt: skip
    if producer.flush(30) or acked != [None]:
        raise StreamError(f"{topic} | warm-up record not acknowledged within 30 s: {acked}")


def _generate(spec: LoadSpec, conn: object) -> None:
    """Child process body: build the pool, report ready, wait for t0, send on schedule."""
    pipe = conn  # multiprocessing Connection (untyped in typeshed)
    try:
        pool = _resolve(spec.pool)(spec.pool_size, spec.seed)
        assert isinstance(pool, list)
        hook = _resolve(spec.header_hook) if spec.header_hook else None
        producer = Producer({
            "bootstrap.servers": spec.bootstrap,
            "client.id": "streamfer-bench-loadgen",
            "linger.ms": spec.linger_ms,
            "enable.idempotence": True,
            "message.max.bytes": 16 * 1024 * 1024,
            "queue.buffering.max.messages": 2_000_000,
        })  # fmt: skip
        producer.list_topics(spec.topic, timeout=30)  # connect and fetch metadata before t0
        _warm(producer, spec.topic, pool[0], hook)
        rng = np.random.default_rng(spec.seed + 7)
        gaps = rng.exponential(1e9 / spec.rate, spec.n).astype(np.int64)
        wall_minus_mono = time.time_ns() - time.monotonic_ns()
        pipe.send("ready")  # type: ignore[attr-defined]
        t0 = int(pipe.recv())  # type: ignore[attr-defined]
        cpu0 = time.process_time()  # its setup (imports, pool, connection) left out
        sched = t0 + np.cumsum(gaps) - gaps[0]
        late = np.zeros(spec.n, dtype=np.int64)
        acks: dict[str, tuple[object, int]] = {}

        def first(err: object, msg: object) -> None:
            acks["first"] = (err, msg.offset())  # type: ignore[attr-defined]

        def last(err: object, msg: object) -> None:
            acks["last"] = (err, msg.offset())  # type: ignore[attr-defined]

        npool = len(pool)
        sched_l = sched.tolist()
        for i in range(spec.n):
            s = sched_l[i]
            _wait_until(s)
            key, value, headers = pool[i % npool]
            if hook is not None:
                headers = hook(pool[i % npool], s + wall_minus_mono, i)  # type: ignore[assignment]
            late[i] = time.monotonic_ns() - s
            callback = first if i == 0 else last if i == spec.n - 1 else None
            while True:
                try:
                    producer.produce(spec.topic, value, key, partition=0,
                                     headers=headers or None, on_delivery=callback)  # fmt: skip
                    break
                except BufferError:  # the local queue is full: let it drain, then send
                    producer.poll(0.01)
            if i % 1000 == 999:
                producer.poll(0)
        if producer.flush(60):
            raise StreamError(f"{spec.topic} | records still unacknowledged after 60 s")
        errors = [str(err) for err, _ in acks.values() if err is not None]
        if errors:
            raise StreamError(f"{spec.topic} | load not delivered: {errors}")
        base = acks["first"][1] if "first" in acks else 0
        end = acks["last"][1] if "last" in acks else base
        if end - base != spec.n - 1:
            raise StreamError(
                f"{spec.topic}[0]@{base} | {spec.n} sends spread over offsets {base}..{end}. "
                "Note: expected one partition and consecutive offsets"
            )
        cpu = time.process_time() - cpu0
        pipe.send(("ok", sched.astype(np.int64), late, base, cpu))  # type: ignore[attr-defined]
    except BaseException as exc:  # the parent re-raises it with context
        pipe.send(("error", f"{type(exc).__name__}: {exc}", None, None, None))  # type: ignore[attr-defined]


def readback_consumer(bootstrap: str, topic: str, settings: dict[str, Any]) -> Consumer:
    """A consumer of every partition of ``topic`` from its beginning, assigned (its group id
    is a throwaway: nothing is committed); ``settings`` add librdkafka settings."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"streamfer-bench-readback-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 5,
        **settings,
    })  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        consumer.assign([CTP(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    except BaseException:
        consumer.close()
        raise
    return consumer


class Readback:
    """Reads decisions off ``topic`` in a thread; records each one's arrival time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._got: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-readback", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise StreamError(f"{self.topic} | read-back consumer not ready within 30 s")

    def _run(self) -> None:
        consumer = readback_consumer(self.bootstrap, self.topic, {"fetch.queue.backoff.ms": 10})
        try:
            self._ready.set()
            while not self._stop.is_set():
                msgs = consumer.consume(10_000, 0) or consumer.consume(1, 0.05)
                now = time.monotonic_ns()
                got = [(now, m.value() or b"") for m in msgs if m.error() is None]
                if got:
                    with self._lock:
                        self._got.extend(got)
        finally:
            consumer.close()

    def count(self) -> int:
        with self._lock:
            return len(self._got)

    def take(self) -> list[tuple[int, bytes]]:
        """Everything read so far, and forget it."""
        with self._lock:
            got, self._got = self._got, []
        return got

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def source_offset(decision: bytes) -> int | None:
    m = _SOURCE_RE.search(decision)
    return int(m.group(2)) if m else None


def run_point(
    spec: LoadSpec,
    readback: Readback,
    drain_timeout_s: float,
    lag: Callable[[], int] | None = None,
    settle_timeout_s: float = 120.0,
    on_start: Callable[[], None] | None = None,
) -> tuple[LoadOutcome, np.ndarray]:
    """Run one rate; returns the load and each record's latency in ns (-1: no decision).

    After the last send, waits up to ``drain_timeout_s`` for the decisions
    (or for ``lag()`` to reach 0: every record resolved, dropped ones too);
    what comes later counts as lost. Then, with ``lag``, waits up to
    ``settle_timeout_s`` more until the system under test has nothing left in
    flight, so the next point starts from an empty queue; ``settled`` says
    whether it did. ``on_start`` is called as t0 is handed to the generator (its set-up
    done): a caller's measurement of the point starts there.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_generate, args=(spec, child), name="bench-loadgen", daemon=True)
    proc.start()
    try:
        ready_by = time.monotonic() + 120
        while not parent.poll(0.2):
            if not proc.is_alive() or time.monotonic() > ready_by:
                raise StreamError(
                    f"{spec.topic} | load generator not ready (exit code {proc.exitcode})"
                )
        msg = parent.recv()
        if msg != "ready":
            raise StreamError(f"{spec.topic} | load generator failed: {msg[1]}")
        readback.take()
        if on_start is not None:
            on_start()
        parent.send(time.monotonic_ns() + 200_000_000)
        expected_end = time.monotonic() + spec.n / spec.rate + 60 + drain_timeout_s
        while not parent.poll(0.2):
            if time.monotonic() > expected_end or not proc.is_alive():
                raise StreamError(f"{spec.topic} | load generator stopped answering")
        status, sched, late, base, generator_cpu_s = parent.recv()
        if status != "ok":
            raise StreamError(f"{spec.topic} | load generator failed: {sched}")
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + drain_timeout_s
    while time.monotonic() < deadline:
        if readback.count() >= spec.n or (lag is not None and lag() == 0):
            break
        time.sleep(0.1)  # poll interval
    time.sleep(0.3)  # decisions of records committed just now are still on their way back
    latency = np.full(spec.n, -1, dtype=np.int64)
    stages: dict[str, list[float]] = {}
    for read_ns, value in readback.take():
        off = source_offset(value)
        if off is None:
            continue
        i = off - base
        if 0 <= i < spec.n and latency[i] < 0:
            latency[i] = read_ns - sched[i]
            for stage, ms in _stage_latencies(value):
                stages.setdefault(stage, []).append(ms)
    stage_ms = {k: np.asarray(v, dtype=np.float64) for k, v in stages.items()}
    settled = True
    if lag is not None and settle_timeout_s > 0:
        settle_by = time.monotonic() + settle_timeout_s
        while lag() > 0:
            if time.monotonic() > settle_by:
                settled = False
                break
            time.sleep(0.2)  # poll interval
        readback.take()  # late decisions of this point: already counted as lost
    return LoadOutcome(sched, late, base, stage_ms, settled, generator_cpu_s), latency


def _stage_latencies(decision: bytes) -> list[tuple[str, float]]:
    try:
        lat = json.loads(decision).get("latency_ms") or {}
    except ValueError:
        return []
    return [(k, float(v)) for k, v in lat.items() if isinstance(v, int | float)]

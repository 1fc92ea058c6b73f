"""Shadow scoring: a second model decides the stream's batches beside the primary.

The engine thread hands each batch it has decided (feeds, metas, the rows' source
coordinates and the primary's results) to :meth:`ShadowScorer.offer` *after* the
primary's decisions went to the outlet; ``offer`` never waits: a full queue
(``shadow.max_backlog`` batches) sheds the batch (``streamfer_shadow_shed_total
{reason="backlog"}``). The scorer's own thread samples rows (``shadow.sample``), runs
the shadow model, builds its results with the stream's processor, compares them with
the primary's field by field (strings and booleans: disagreements; numbers: the
absolute delta) and publishes its decisions to ``shadow.output_topic`` with the same
source coordinates and its own model identity, through its own producer: no offset,
commit or transaction of the stream waits for it. A batch the shadow fails on is
counted (``reason="failed"``) and logged, and the scorer goes on with the next.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamfer.pipeline.batcher import Segment
from streamfer.pipeline.decisions import DecisionEncoder, SegmentTiming
from streamfer.pipeline.handoff import InferFn
from streamfer.pipeline.isolation import results_isolated
from streamfer.pipeline.metrics import ShadowRecorder
from streamfer.pipeline.processors.base import Prepared, Processor, Result
from streamfer.streams.client import Outgoing
from streamfer.streams.sink import KafkaSink
from streamfer.threadnames import name_this_thread

log = logging.getLogger(__name__)

_LOG_EVERY = 100  # failures: the first and every 100th are logged
_STOP = None


@dataclass(frozen=True)
class Scored:
    """One decided batch as the shadow receives it (rows in batch order)."""

    feeds: dict[str, np.ndarray]
    metas: list[Any]
    results: list[Result | BaseException]
    topics: list[str]
    partitions: np.ndarray
    offsets: np.ndarray
    keys: list[bytes | None]
    broker_ms: np.ndarray

    @classmethod
    def of(cls, segments: list[Segment[Prepared]], feeds: dict[str, np.ndarray],
           metas: Sequence[Any], results: Sequence[Any]) -> Scored:  # fmt: skip
        topics: list[str] = []
        parts, offsets, brokers = [], [], []
        keys: list[bytes | None] = []
        for seg in segments:
            prepared = seg.chunk.payload
            batch = prepared.batch
            rows = prepared.rows[seg.rows]
            topics += [batch.topic] * len(rows)
            parts.append(np.full(len(rows), batch.partition))
            offsets.append(np.asarray(batch.offsets)[rows])
            brokers.append(batch.broker_ms()[rows])
            keys += [batch.keys[r] for r in rows.tolist()]
        return cls(dict(feeds), list(metas), list(results), topics, np.concatenate(parts),
                   np.concatenate(offsets), keys, np.concatenate(brokers))  # fmt: skip


class ShadowScorer:
    """The shadow of one stream: a bounded queue, one thread, its own producer."""

    def __init__(
        self,
        *,
        stream: str,
        infer: InferFn,
        processor: Processor,
        encoder: DecisionEncoder,
        sink: KafkaSink,
        topic: str,
        sample: float,
        max_backlog: int,
        recorder: ShadowRecorder,
        seed: int | None = None,
    ) -> None:
        self.stream, self.infer, self.processor = stream, infer, processor
        self.encoder, self.sink, self.topic = encoder, sink, topic
        self.sample = sample
        self.recorder = recorder
        self._queue: queue.Queue[Scored | None] = queue.Queue(maxsize=max_backlog)
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def start(self) -> None:
        self.sink.start()
        self._thread = threading.Thread(target=self._run, name=f"shadow-{self.stream}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop (what is queued is shed, not waited for) and close the producer."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # a full queue: the thread sees _stop next
            self._queue.put_nowait(_STOP)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.sink.close(timeout_s)

    def offer(self, segments: list[Segment[Prepared]], feeds: dict[str, np.ndarray],
              metas: Sequence[Any], results: Sequence[Any]) -> None:  # fmt: skip
        """From the engine thread, after the primary's decisions went out; never waits."""
        n = len(results)
        if self.sample <= 0 or self._stop.is_set():
            return
        try:
            self._queue.put_nowait(Scored.of(segments, feeds, metas, results))
        except queue.Full:
            self.recorder.shed("backlog", n)

    # -- the shadow's thread -------------------------------------------------------------
    def _run(self) -> None:
        name_this_thread()
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            try:
                self._score(item)
            except Exception as exc:  # isolated: the primary never hears of it
                self._failures += 1
                self.recorder.shed("failed", len(item.results))
                if self._failures % _LOG_EVERY == 1:
                    log.warning("%s | shadow failed on a batch of %d (%s: %s); %d so far",
                                self.stream, len(item.results), type(exc).__name__, exc,
                                self._failures)  # fmt: skip

    def _score(self, item: Scored) -> None:
        n = len(item.results)
        rows = np.arange(n)
        if self.sample < 1:
            rows = np.flatnonzero(self._rng.random(n) < self.sample)
        if not len(rows):
            return
        feeds = {k: v[rows] for k, v in item.feeds.items()}
        metas = [item.metas[i] for i in rows.tolist()]
        start = time.perf_counter_ns()
        outputs = self.infer(feeds)
        infer_done = time.perf_counter_ns()
        mine = results_isolated(self.processor, outputs, metas)
        done = time.perf_counter_ns()
        self.recorder.latency((done - start) / 1e9)
        primary = [item.results[i] for i in rows.tolist()]
        self._compare(primary, mine)
        timing = SegmentTiming(0.0, 0.0, (infer_done - start) / 1e6, (done - infer_done) / 1e6)
        self._publish(item, rows, mine, timing)

    def _compare(self, primary: list[Any], mine: list[Any]) -> None:
        differ: dict[str, int] = {}
        deltas: dict[str, list[float]] = {}
        for a, b in zip(primary, mine, strict=True):
            if not isinstance(a, dict) or not isinstance(b, dict):
                continue
            for field, va in a.items():
                vb = b.get(field)
                if isinstance(va, float) and isinstance(vb, float):
                    if math.isfinite(va) and math.isfinite(vb):
                        deltas.setdefault(field, []).append(abs(va - vb))
                elif isinstance(va, (str, bool)) and va != vb:
                    differ[field] = differ.get(field, 0) + 1
        for field, count in differ.items():
            self.recorder.disagreed(field, count)
        for field, values in deltas.items():
            self.recorder.delta(field, values)

    def _publish(self, item: Scored, rows: np.ndarray, mine: list[Any],
                 timing: SegmentTiming) -> None:  # fmt: skip
        good = [j for j, r in enumerate(mine) if isinstance(r, dict)]
        if len(good) < len(mine):
            self.recorder.shed("failed", len(mine) - len(good))
        # one segment per source partition, in batch order
        groups: dict[tuple[str, int], list[int]] = {}
        for j in good:
            i = int(rows[j])
            groups.setdefault((item.topics[i], int(item.partitions[i])), []).append(j)
        for (topic, partition), js in groups.items():
            idx = [int(rows[j]) for j in js]
            docs = self.encoder.encode_segment(
                topic, partition, [int(item.offsets[i]) for i in idx],
                [item.keys[i] for i in idx], [mine[j] for j in js], None,
                [max(0.0, float(item.broker_ms[i])) for i in idx], len(rows), timing,
            )  # fmt: skip
            values = [d for d in docs if isinstance(d, bytes)]
            keys = [item.keys[i] for i, d in zip(idx, docs, strict=True) if isinstance(d, bytes)]
            if len(values) < len(docs):
                self.recorder.shed("failed", len(docs) - len(values))
            if values:
                delivered = self._delivered
                out = Outgoing(topic=self.topic, values=values, keys=keys, on_delivery=delivered)
                self.sink.send_many(out)
                self.recorder.decided(len(values))

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self.recorder.shed("publish_failed", 1)

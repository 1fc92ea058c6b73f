"""The two reference loops the pipeline is measured against.

* pass-through: consume and produce the same records with the same Kafka
  client (kafka-python) and the same client settings as the pipeline, no
  model. Sends are pipelined and offsets are committed only up to what has
  been acked, as the pipeline does, so it is the ceiling the pipeline cannot
  beat.
* naive: the loop most tutorials write — poll one record, decode, featurize,
  run the engine at batch 1, produce the decision, wait for the ack, commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from streamfer.errors import StreamError
from streamfer.pipeline.config import PipelineConfig


@dataclass(frozen=True)
class ClientTuning:
    """The Kafka client settings the pipeline runs with, applied to the reference loops too."""

    max_poll_records: int = 500
    fetch_max_wait_ms: int = 20
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    linger_ms: int = 5
    compression_type: str | None = None
    max_request_size: int = 8 * 1024 * 1024
    commit_interval_s: float = 0.2

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> ClientTuning:
        comp, knobs = cfg.producer.compression_type, cfg.streams[0].knobs
        return cls(
            max_poll_records=cfg.consumer.max_poll_records,
            fetch_max_wait_ms=knobs.fetch_max_wait_ms,
            max_partition_fetch_bytes=cfg.consumer.max_partition_fetch_bytes,
            linger_ms=knobs.linger_ms,
            compression_type=None if comp == "none" else comp,
            max_request_size=cfg.producer.max_request_size,
            commit_interval_s=knobs.commit_interval_ms / 1000,
        )

    def consumer(self, bootstrap: str, topic: str, group: str, **over: Any) -> KafkaConsumer:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "client_id": "streamfer-bench",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": self.max_poll_records,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_partition_fetch_bytes": self.max_partition_fetch_bytes,
        }
        kwargs.update(over)
        consumer = KafkaConsumer(**kwargs)
        consumer.subscribe([topic])
        return consumer

    def producer(self, bootstrap: str, **over: Any) -> KafkaProducer:
        from streamfer.streams.client import ProducerOptions

        kwargs: dict[str, Any] = {
            "bootstrap_servers": bootstrap,
            "client_id": "streamfer-bench",
            "acks": "all",
            "enable_idempotence": True,
            "batch_size": ProducerOptions().batch_size,  # what the pipeline's sink uses
            "linger_ms": self.linger_ms,
            "compression_type": self.compression_type,
            "max_request_size": self.max_request_size,
        }
        kwargs.update(over)
        return KafkaProducer(**kwargs)


@dataclass(frozen=True)
class Job:
    """One run of a loop: copy or score the first ``records`` of ``in_topic`` into ``out_topic``."""

    bootstrap: str
    in_topic: str
    out_topic: str
    records: int
    group: str
    timeout_s: float = 300.0


@dataclass(frozen=True)
class LoopResult:
    """What a reference loop did; the rate itself is read from the output topic."""

    processed: int
    wall_s: float  # first record polled -> last ack
    cpu_s: float  # CPU time of this process (all its threads) over the same span


def run_passthrough(job: Job, tuning: ClientTuning) -> LoopResult:
    """Copy ``job.records`` records from ``in_topic`` to ``out_topic`` as fast as the client allows.

    Sends never wait for acks (the producer pipelines them, as the pipeline's
    sink does); offsets are committed every ``commit_interval_s`` up to what
    has been acked, so nothing is committed before its copy is in Kafka.
    """
    consumer = tuning.consumer(job.bootstrap, job.in_topic, job.group)
    producer = tuning.producer(job.bootstrap)
    acked: dict[TopicPartition, int] = {}
    lock = threading.Lock()

    def on_ack(tp: TopicPartition, offset: int) -> Callable[[Any], None]:
        def done(_md: Any) -> None:
            with lock:
                acked[tp] = max(acked.get(tp, -1), offset)

        return done

    def commit_acked() -> None:
        with lock:
            offsets = {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in acked.items()}
        if offsets:
            consumer.commit_async(offsets)

    done, t0, cpu0 = 0, 0, 0.0
    n, timeout_s = job.records, job.timeout_s
    deadline = time.monotonic() + timeout_s
    next_commit = time.monotonic() + tuning.commit_interval_s
    try:
        while done < n:
            if time.monotonic() > deadline:
                raise StreamError(
                    f"{job.in_topic} | pass-through copied {done}/{n} in {timeout_s} s"
                )
            want = min(tuning.max_poll_records, n - done)
            for tp, recs in consumer.poll(timeout_ms=200, max_records=want).items():
                if not t0:
                    t0, cpu0 = time.perf_counter_ns(), time.process_time()
                for r in recs:
                    fut = producer.send(job.out_topic, key=r.key, value=r.value,
                                        headers=r.headers or None)  # fmt: skip
                fut.add_callback(on_ack(tp, recs[-1].offset))
                done += len(recs)
            if time.monotonic() >= next_commit:
                commit_acked()
                next_commit = time.monotonic() + tuning.commit_interval_s
        producer.flush()
        wall = (time.perf_counter_ns() - t0) / 1e9
        cpu = time.process_time() - cpu0
        commit_acked()
        consumer.commit()
    finally:
        producer.close(timeout=10)
        consumer.close()
    return LoopResult(done, wall, cpu)


def run_naive(job: Job, tuning: ClientTuning, handle: Callable[[Any], bytes]) -> LoopResult:
    """One record at a time: ``handle(record) -> decision bytes``, produce, wait, commit."""
    consumer = tuning.consumer(job.bootstrap, job.in_topic, job.group, max_poll_records=1)
    # linger 0: waiting for a batch to fill makes no sense when every send is awaited
    producer = tuning.producer(job.bootstrap, linger_ms=0)
    done, t0, cpu0 = 0, 0, 0.0
    n, timeout_s = job.records, job.timeout_s
    deadline = time.monotonic() + timeout_s
    try:
        while done < n:
            if time.monotonic() > deadline:
                raise StreamError(
                    f"{job.in_topic} | naive loop handled {done}/{n} in {timeout_s} s"
                )
            for tp, recs in consumer.poll(timeout_ms=200, max_records=1).items():
                if not t0:
                    t0, cpu0 = time.perf_counter_ns(), time.process_time()
                r = recs[0]
                producer.send(job.out_topic, key=r.key, value=handle(r)).get(timeout=30)
                consumer.commit({tp: OffsetAndMetadata(r.offset + 1, "", -1)})
                done += 1
        wall = (time.perf_counter_ns() - t0) / 1e9
        cpu = time.process_time() - cpu0
    finally:
        producer.close(timeout=10)
        consumer.close()
    return LoopResult(done, wall, cpu)

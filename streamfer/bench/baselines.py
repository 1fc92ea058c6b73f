"""Hand-written librdkafka (confluent-kafka) loops that streamfer's scoring is measured against.

Each is the program a strong engineer writes in an afternoon, with its client
settings chosen sensibly (:class:`RdkafkaTuning`) and nothing of streamfer's
runtime inside:

* pass-through: consume 1,000 and produce the same key, value and headers, no
  model. The ceiling of this client on this machine.
* plain batch loop: consume 500 → ``json.loads`` each → featurize each → one
  model call for the batch → encode the decisions → produce → ``flush()`` →
  synchronous commit of the batch's offsets.
* tuned batch loop: consume 1,000 → ``orjson.loads`` each → featurize each →
  one model call → encode the decisions → produce with a delivery callback
  that counts the batch's acknowledgements; no flush per batch: a batch's
  offsets are committed (asynchronously) once all its decisions, and those of
  every batch before it, are acknowledged.

All three are at-least-once: no input offset is committed before its output
is acknowledged by the broker, and a failed delivery stops the loop with
nothing after it committed. The model loops use the config's featurizer,
model file, engine target and thresholds, and encode their decisions with
streamfer's own encoder (:class:`streamfer.pipeline.decisions.DecisionEncoder`, latencies
null: they measure none), so their documents are streamfer's for the same records.
Unlike streamfer they do not validate fields or dead-letter bad input: a record
that does not decode stops the loop (nothing after it committed).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from streamfer.bench.passthrough import Job, LoopResult
from streamfer.engines.base import Runner
from streamfer.engines.select import create_runner
from streamfer.errors import StreamError
from streamfer.models.features import FraudFeaturizer
from streamfer.pipeline.config import PipelineConfig
from streamfer.pipeline.decisions import DecisionEncoder, ModelIdentity
from streamfer.pipeline.postprocess import FraudPostprocessor

log = logging.getLogger(__name__)

PLAIN_BATCH = 500
TUNED_BATCH = 1000
PASSTHROUGH_BATCH = 1000
Delivery = Callable[[KafkaError | None, Message], None]


@dataclass(frozen=True)
class RdkafkaTuning:
    """librdkafka settings of the baseline loops; the report's notes state them.

    Fetch wait, partition fetch size, linger and compression are the pipeline
    config's own values (as the kafka-python pass-through takes them).
    """

    fetch_wait_max_ms: int = 20
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    # prefetch about 20 batches of 1,000 ahead: enough that the fetcher never
    # starves the loop, a few MB instead of librdkafka's default 100,000 records
    queued_min_messages: int = 20_000
    # librdkafka waits this long before the next fetch once the queue is above
    # its threshold; its default (1 s) stalls a loop that drains 20,000 records
    # in a fraction of that (measured here: a 40,000/s ceiling instead of >300,000/s)
    fetch_queue_backoff_ms: int = 10
    linger_ms: int = 5
    compression: str = "none"

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> RdkafkaTuning:
        knobs = cfg.streams[0].knobs
        return cls(
            fetch_wait_max_ms=knobs.fetch_max_wait_ms,
            max_partition_fetch_bytes=cfg.consumer.max_partition_fetch_bytes,
            linger_ms=knobs.linger_ms,
            compression=cfg.producer.compression_type,
        )

    def consumer_config(self, bootstrap: str, group: str) -> dict[str, Any]:
        return {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "streamfer-bench",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "fetch.wait.max.ms": self.fetch_wait_max_ms,
            "max.partition.fetch.bytes": self.max_partition_fetch_bytes,
            "queued.min.messages": self.queued_min_messages,
            "fetch.queue.backoff.ms": self.fetch_queue_backoff_ms,
            "error_cb": _log_error,
        }

    def producer_config(self, bootstrap: str) -> dict[str, Any]:
        return {
            "bootstrap.servers": bootstrap,
            "client.id": "streamfer-bench",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": self.linger_ms,
            "compression.type": self.compression,
            "error_cb": _log_error,
        }

    def clients(self, job: Job) -> tuple[Consumer, Producer]:
        """A loop's consumer, subscribed to ``job.in_topic``, and its producer."""
        consumer = Consumer(self.consumer_config(job.bootstrap, job.group))
        consumer.subscribe([job.in_topic])
        return consumer, Producer(self.producer_config(job.bootstrap))

    def describe(self) -> str:
        return (
            f"consumer fetch.wait.max.ms={self.fetch_wait_max_ms}, "
            f"max.partition.fetch.bytes={self.max_partition_fetch_bytes}, "
            f"queued.min.messages={self.queued_min_messages}, "
            f"fetch.queue.backoff.ms={self.fetch_queue_backoff_ms}, manual commits; producer "
            f"acks=all, enable.idempotence=true, linger.ms={self.linger_ms}, "
            f"compression.type={self.compression}, other settings librdkafka's defaults"
        )


def _log_error(err: KafkaError) -> None:
    log.warning("bench baseline | librdkafka: %s", err)


@dataclass(frozen=True)
class FraudModel:
    """The config's fraud stream as the model loops use it: an active runner, thresholds, names."""

    stream: str
    runner: Runner
    input_name: str
    post: FraudPostprocessor
    identity: ModelIdentity
    encoder: DecisionEncoder

    @classmethod
    def of(cls, cfg: PipelineConfig, runner: Runner) -> FraudModel:
        """``runner`` must be active (its specs and metadata are read here)."""
        stream = cfg.streams[0]
        meta = runner.metadata
        identity = ModelIdentity(
            meta.get("streamfer.name", runner.name),
            meta.get("streamfer.version", "unknown"),
            runner.info.kind,
            runner.info.precision,
        )
        return cls(
            stream.name,
            runner,
            runner.input_specs[0].name,
            FraudPostprocessor(stream.fraud),
            identity,
            DecisionEncoder(stream.name, "transaction", identity),
        )

    def scores(
        self, featurizer: FraudFeaturizer, txs: list[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Featurize each, one model call for all, one ``{fraud_score, action}`` per input."""
        outputs = self.runner.infer({self.input_name: featurizer.transform_many(txs)})
        return self.post.results(outputs, txs)

    def decisions(self, msgs: Sequence[Message], results: Sequence[Mapping[str, Any]],
                  batch_size: int | None = None) -> list[bytes]:  # fmt: skip
        """The decision documents of ``msgs`` (one result each), as streamfer encodes them:
        one segment per run of messages from one partition; StreamError for a result
        that does not encode (the loop stops)."""
        size = len(msgs) if batch_size is None else batch_size
        out: list[bytes] = []
        start = 0
        while start < len(msgs):
            partition = msgs[start].partition() or 0
            end = start + 1
            while end < len(msgs) and msgs[end].partition() == partition:
                end += 1
            run = msgs[start:end]
            for doc in self.encoder.encode_segment(
                run[0].topic() or "", partition, [m.offset() or 0 for m in run],
                [m.key() for m in run], results[start:end], None, None, size, None,
            ):  # fmt: skip
                if not isinstance(doc, bytes):
                    raise StreamError(str(doc))
                out.append(doc)
            start = end
        return out


def baseline_runner(cfg: PipelineConfig, max_batch: int = TUNED_BATCH) -> Runner:
    """The config's fraud model, target and precision, for batches up to ``max_batch``.

    One intra-op thread unless the config names a number: ONNX Runtime's default
    pool spins its idle workers after every call, which on two cores burns CPU
    the Kafka client needs and buys nothing for a model this small.
    """
    model = cfg.models[cfg.streams[0].model]
    return create_runner(
        model.path,
        target=model.target,
        precision=model.precision,
        max_batch=max_batch,
        intra_op_threads=model.intra_op_threads or 1,
    )


def _next_offsets(msgs: Sequence[Message]) -> dict[tuple[str, int], int]:
    """Per partition, the offset to commit once every message of ``msgs`` is done."""
    return {(m.topic() or "", m.partition() or 0): (m.offset() or 0) + 1 for m in msgs}


def _commit_list(offsets: dict[tuple[str, int], int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, o) for (t, p), o in offsets.items()]


class _Batch:
    """One consumed batch whose outputs are in flight; its delivery callback counts acks."""

    __slots__ = ("acked", "failed", "offsets", "size")

    def __init__(self, msgs: Sequence[Message]) -> None:
        self.size = len(msgs)
        self.acked = 0
        self.failed: KafkaError | None = None
        self.offsets = _next_offsets(msgs)

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and self.failed is None:
            self.failed = err
        self.acked += 1


class AckedCommits:
    """Batches in consume order; commits the offsets of the longest fully acknowledged prefix.

    Delivery callbacks run inside ``producer.poll()``/``flush()`` in the loop's
    own thread, so no lock is needed.
    """

    def __init__(self, consumer: Consumer, out_topic: str) -> None:
        self._consumer = consumer
        self._out_topic = out_topic
        self._pending: deque[_Batch] = deque()

    def track(self, msgs: Sequence[Message]) -> Delivery:
        """The delivery callback for every output of ``msgs``."""
        batch = _Batch(msgs)
        self._pending.append(batch)
        return batch.on_delivery

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def commit_acked(self, asynchronous: bool = True) -> None:
        """Commit through the last batch whose outputs, and all before it, are acknowledged."""
        offsets: dict[tuple[str, int], int] = {}
        pending = self._pending
        while pending and pending[0].acked == pending[0].size:
            batch = pending.popleft()
            if batch.failed is not None:
                raise StreamError(
                    f"{self._out_topic} | delivery failed: {batch.failed}. Note: input offsets "
                    "from this batch on stay uncommitted (at-least-once)"
                )
            offsets.update(batch.offsets)
        if not offsets:
            return
        if asynchronous:
            self._consumer.commit(offsets=_commit_list(offsets), asynchronous=True)
        else:
            self._consumer.commit(offsets=_commit_list(offsets), asynchronous=False)


def _consume(consumer: Consumer, want: int, topic: str) -> list[Message]:
    msgs = consumer.consume(want, 0.5)
    for m in msgs:
        err = m.error()
        if err is not None:
            raise StreamError(f"{topic} | consume failed: {err}. Note: expected records")
    return msgs


def _produce_blocking(
    producer: Producer, topic: str, value: bytes, key: bytes | None, on_delivery: Delivery,
    headers: Any = None,
) -> None:  # fmt: skip
    """Produce once the local queue has room: serve delivery reports until it does."""
    while True:
        producer.poll(0.01)  # backpressure: the queue drains as the broker acknowledges
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery, headers=headers)
            return
        except BufferError:
            continue


class _Clock:
    """Wall and process CPU time from the first record on (group join stays outside)."""

    def __init__(self, job: Job, what: str) -> None:
        self.job = job
        self.what = what
        self.deadline = time.monotonic() + job.timeout_s
        self.t0 = 0
        self.cpu0 = 0.0

    def tick(self, done: int, got: int) -> None:
        if got and not self.t0:
            self.t0, self.cpu0 = time.perf_counter_ns(), time.process_time()
        if time.monotonic() > self.deadline:
            raise StreamError(
                f"{self.job.in_topic} | {self.what} handled {done}/{self.job.records} in "
                f"{self.job.timeout_s:g} s. Note: expected the whole topic within the timeout"
            )

    def result(self, done: int) -> LoopResult:
        return LoopResult(
            done, (time.perf_counter_ns() - self.t0) / 1e9, time.process_time() - self.cpu0
        )


def _finish(producer: Producer, commits: AckedCommits, job: Job) -> None:
    left = producer.flush(job.timeout_s)
    if left:
        raise StreamError(
            f"{job.out_topic} | {left} outputs unacknowledged after {job.timeout_s:g} s. "
            "Note: expected the broker to acknowledge every output"
        )
    commits.commit_acked(asynchronous=False)
    if commits.in_flight:
        raise StreamError(f"{job.out_topic} | {commits.in_flight} batches not acknowledged. "
                          "Note: expected none after flush()")  # fmt: skip


def run_confluent_passthrough(
    job: Job, tuning: RdkafkaTuning, batch: int = PASSTHROUGH_BATCH
) -> LoopResult:
    """Copy the first ``job.records`` records (key, value, headers) to ``job.out_topic``."""
    consumer, producer = tuning.clients(job)
    commits = AckedCommits(consumer, job.out_topic)
    clock = _Clock(job, "confluent pass-through")
    out, produce, done = job.out_topic, producer.produce, 0
    try:
        while done < job.records:
            msgs = _consume(consumer, min(batch, job.records - done), job.in_topic)
            clock.tick(done, len(msgs))
            if msgs:
                on_delivery = commits.track(msgs)
                for m in msgs:
                    try:
                        produce(out, m.value(), m.key(), on_delivery=on_delivery,
                                headers=m.headers())  # fmt: skip
                    except BufferError:
                        _produce_blocking(producer, out, m.value() or b"", m.key(), on_delivery,
                                          m.headers())  # fmt: skip
                done += len(msgs)
            producer.poll(0)
            commits.commit_acked()
        _finish(producer, commits, job)
        return clock.result(done)
    finally:
        consumer.close()


def run_plain_loop(job: Job, tuning: RdkafkaTuning, model: FraudModel,
                   batch: int = PLAIN_BATCH) -> LoopResult:  # fmt: skip
    """Consume ``batch`` → json → featurize → one model call → produce → flush → commit."""
    consumer, producer = tuning.clients(job)
    featurizer = FraudFeaturizer()
    failed: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    clock = _Clock(job, "plain batch loop")
    done = 0
    try:
        while done < job.records:
            msgs = _consume(consumer, min(batch, job.records - done), job.in_topic)
            clock.tick(done, len(msgs))
            if not msgs:
                continue
            txs = [json.loads(m.value() or b"") for m in msgs]
            values = model.decisions(msgs, model.scores(featurizer, txs))
            for m, value in zip(msgs, values, strict=True):
                producer.produce(job.out_topic, value, m.key(), on_delivery=on_delivery)
            left = producer.flush(job.timeout_s)
            if left or failed:
                raise StreamError(
                    f"{job.out_topic} | {left} decisions unacknowledged, {len(failed)} failed "
                    f"({failed[:1]}). Note: the batch's offsets stay uncommitted"
                )
            consumer.commit(offsets=_commit_list(_next_offsets(msgs)), asynchronous=False)
            done += len(msgs)
        return clock.result(done)
    finally:
        consumer.close()


def run_tuned_loop(job: Job, tuning: RdkafkaTuning, model: FraudModel,
                   batch: int = TUNED_BATCH) -> LoopResult:  # fmt: skip
    """Consume ``batch`` → orjson → featurize → one model call → produce; commit what is acked."""
    import orjson

    consumer, producer = tuning.clients(job)
    featurizer = FraudFeaturizer()
    commits = AckedCommits(consumer, job.out_topic)
    out, loads = job.out_topic, orjson.loads
    produce = producer.produce
    clock = _Clock(job, "tuned batch loop")
    done = 0
    try:
        while done < job.records:
            msgs = _consume(consumer, min(batch, job.records - done), job.in_topic)
            clock.tick(done, len(msgs))
            if msgs:
                txs = [loads(m.value() or b"") for m in msgs]
                values = model.decisions(msgs, model.scores(featurizer, txs))
                on_delivery = commits.track(msgs)
                size = len(msgs)
                for m, value in zip(msgs, values, strict=True):
                    key = m.key()
                    try:
                        produce(out, value, key, on_delivery=on_delivery)
                    except BufferError:
                        _produce_blocking(producer, out, value, key, on_delivery)
                done += size
            producer.poll(0)
            commits.commit_acked()
        _finish(producer, commits, job)
        return clock.result(done)
    finally:
        consumer.close()

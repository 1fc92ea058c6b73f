"""A per-message stream-processing app with its own per-card state store: a scoring baseline.

The program a user of a per-message streaming library writes for the fraud
stream, by hand (confluent-kafka, no library state store):

* consume one message → ``orjson.loads`` → featurize the one record against
  the card's state (``FraudFeaturizer.transform``, per-record Python) → one
  model call → produce the decision;
* the card store is the featurizer's dict of card -> state, kept durable in a
  changelog topic: after every record its card's state is encoded (the
  featurizer's codec) and produced, keyed by card id;
* every ``commit_interval_s`` a checkpoint: ``flush()`` (every decision and
  changelog entry acknowledged), then a synchronous commit of the offsets
  consumed so far. At-least-once, as the other loops.

Features, model, thresholds and the decision document are the other loops'
(:class:`~streamfer.bench.baselines.FraudModel`), so its decisions equal
theirs for the same records.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from streamfer.bench.baselines import (
    FraudModel,
    Job,
    RdkafkaTuning,
    _Clock,
    _consume,
    _produce_blocking,
)
from streamfer.bench.passthrough import LoopResult
from streamfer.errors import StreamError
from streamfer.models.features import CARD_CODEC, FraudFeaturizer

COMMIT_INTERVAL_S = 0.2  # the pipeline config's default commit interval


def run_stateful_loop(job: Job, tuning: RdkafkaTuning, model: FraudModel, changelog: str,
                      commit_interval_s: float = COMMIT_INTERVAL_S) -> LoopResult:  # fmt: skip
    """One message at a time through its own state store, one model call each (see above)."""
    import orjson

    consumer, producer = tuning.clients(job)
    failed: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failed.append(err)

    featurizer = FraudFeaturizer()
    out, loads = job.out_topic, orjson.loads
    encode = CARD_CODEC.encode
    infer, post, input_name = model.runner.infer, model.post, model.input_name
    consumed: dict[tuple[str, int], int] = {}
    clock = _Clock(job, "per-message stateful loop")
    next_commit = time.monotonic() + commit_interval_s
    done = 0
    try:
        while done < job.records:
            msgs = _consume(consumer, 1, job.in_topic)
            clock.tick(done, len(msgs))
            for m in msgs:
                tx = loads(m.value() or b"")
                feats = featurizer.transform(tx)[None, :]
                card_id = str(tx["card_id"])
                state = featurizer.card(card_id)
                if state is not None:  # always: it forgets cards only past max_cards
                    _produce(producer, changelog, encode(state), card_id.encode(), on_delivery)
                (result,) = post.results(infer({input_name: feats}), [tx])
                (value,) = model.decisions([m], [result])
                _produce(producer, out, value, m.key(), on_delivery)
                consumed[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
                done += 1
            producer.poll(0)
            if time.monotonic() >= next_commit or done >= job.records:
                _checkpoint(consumer, producer, consumed, failed, job)
                next_commit = time.monotonic() + commit_interval_s
        return clock.result(done)
    finally:
        consumer.close()


def _produce(producer: Producer, topic: str, value: bytes, key: bytes | None,
             on_delivery: Any) -> None:  # fmt: skip
    try:
        producer.produce(topic, value, key, on_delivery=on_delivery)
    except BufferError:
        _produce_blocking(producer, topic, value, key, on_delivery)


def _checkpoint(consumer: Consumer, producer: Producer, consumed: dict[tuple[str, int], int],
                failed: list[KafkaError], job: Job) -> None:  # fmt: skip
    """Every output and changelog entry acknowledged, then the consumed offsets committed."""
    left = producer.flush(job.timeout_s)
    if left or failed:
        raise StreamError(
            f"{job.out_topic} | {left} outputs unacknowledged, {len(failed)} failed "
            f"({failed[:1]}). Note: offsets since the last checkpoint stay uncommitted"
        )
    if consumed:
        offsets = [TopicPartition(t, p, o) for (t, p), o in consumed.items()]
        consumer.commit(offsets=offsets, asynchronous=False)

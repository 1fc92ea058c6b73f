"""The hand-written confluent-kafka baselines on the real broker, a few hundred records each.

Every input gets exactly one output; the model loops' scores are the ones the
featurizer and the model give offline for the same records; every input
offset ends committed. Small consume batches make each loop go through
several batches (and the tuned loop through several acknowledged prefixes).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from confluent_kafka import Consumer, TopicPartition

from streamfer.bench.baselines import (
    FraudModel,
    Job,
    RdkafkaTuning,
    baseline_runner,
    run_confluent_passthrough,
    run_plain_loop,
    run_tuned_loop,
)
from streamfer.bench.kafka_io import OutRecord, produce_all, read_n, run_id, topic_set
from streamfer.bench.pipeline_proc import CONFIG_DIR, bench_config, load_raw
from streamfer.bench.records import transaction_pool
from streamfer.bench.stateful_loop import run_stateful_loop
from streamfer.models.features import FraudFeaturizer
from streamfer.pipeline.config import PipelineConfig
from streamfer.streams.codecs import validate_decision

pytestmark = pytest.mark.integration

MODEL = Path(__file__).resolve().parents[2] / "streamfer" / "models" / "fraud.onnx"
RECORDS = 300
PARTITIONS = 2


@dataclass(frozen=True)
class Ran:
    """One loop's run: what it wrote and where its group's offsets ended."""

    outputs: list[OutRecord]
    processed: int
    committed: list[int]


@dataclass(frozen=True)
class Runs:
    inputs: list[OutRecord]  # the input topic read back: (partition, offset) -> bytes
    ends: list[int]  # end offset per input partition
    cfg: PipelineConfig
    by_loop: dict[str, Ran]


def _offsets(bootstrap: str, topic: str, group: str) -> tuple[list[int], list[int]]:
    """(committed offset, end offset) per partition of ``topic`` for ``group``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        committed = [tp.offset for tp in consumer.committed(tps, timeout=10)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
    finally:
        consumer.close()
    return committed, ends


@pytest.fixture(scope="module")
def runs(kafka_bootstrap: str) -> Iterator[Runs]:
    if not MODEL.exists():
        pytest.skip("models/fraud.onnx not there yet")
    rid = run_id()
    _, cfg = bench_config(
        load_raw(CONFIG_DIR / "fraud.yaml"), source="fraud.yaml", kind="transaction",
        bootstrap=kafka_bootstrap, input_topic="in", output_topic="out", group="unused",
    )  # fmt: skip
    tuning = RdkafkaTuning.from_config(cfg)
    with topic_set(kafka_bootstrap) as topics, baseline_runner(cfg) as runner:
        model = FraudModel.of(cfg, runner)
        in_topic = topics.input(f"t-baselines-{rid}", partitions=PARTITIONS)
        produce_all(kafka_bootstrap, in_topic, transaction_pool(RECORDS, seed=7))
        loops = {
            "pass-through": lambda job: run_confluent_passthrough(job, tuning, batch=50),
            "plain": lambda job: run_plain_loop(job, tuning, model, batch=64),
            "tuned": lambda job: run_tuned_loop(job, tuning, model, batch=100),
            "stateful": lambda job: run_stateful_loop(
                job, tuning, model, topics.input(f"t-baselines-{rid}-cards")
            ),
        }
        by_loop: dict[str, Ran] = {}
        ends: list[int] = []
        for name, loop in loops.items():
            out = topics.output(f"t-baselines-{rid}-{name}")
            group = f"g-baselines-{rid}-{name}"
            result = loop(Job(kafka_bootstrap, in_topic, out, RECORDS, group, timeout_s=60))
            committed, ends = _offsets(kafka_bootstrap, in_topic, group)
            outputs = read_n(kafka_bootstrap, out, RECORDS + 1, timeout_s=5)
            by_loop[name] = Ran(outputs, result.processed, committed)
        inputs = read_n(kafka_bootstrap, in_topic, RECORDS, timeout_s=30, partitions=PARTITIONS)
        yield Runs(inputs, ends, cfg, by_loop)


def _offline_scores(inputs: list[OutRecord]) -> dict[str, float]:
    """tx_id -> score from a fresh featurizer and the model file, no Kafka, one call."""
    txs = [json.loads(v) for _, v, _ in transaction_pool(RECORDS, seed=7)]  # produce order
    assert len({tx["tx_id"] for tx in txs}) == len(txs) == len(inputs)
    features = FraudFeaturizer().transform_many(txs)
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    (scores,) = session.run(["score"], {session.get_inputs()[0].name: features})
    return {tx["tx_id"]: float(s) for tx, s in zip(txs, scores[:, 0], strict=True)}


def test_every_loop_handles_every_record_once_and_commits_the_end(runs: Runs) -> None:
    assert sum(runs.ends) == RECORDS
    for name, ran in runs.by_loop.items():
        assert ran.processed == RECORDS, name
        assert len(ran.outputs) == RECORDS, name
        assert ran.committed == runs.ends, name


def test_passthrough_copies_the_same_bytes(runs: Runs) -> None:
    copied = Counter((r.key, r.value) for r in runs.by_loop["pass-through"].outputs)
    assert copied == Counter((r.key, r.value) for r in runs.inputs)


@pytest.mark.parametrize("loop", ["plain", "tuned", "stateful"])
def test_model_loop_scores_every_input_once_as_offline(runs: Runs, loop: str) -> None:
    by_source = {(r.partition, r.offset): r for r in runs.inputs}
    offline = _offline_scores(runs.inputs)
    thresholds = runs.cfg.streams[0].fraud
    seen: Counter[tuple[int, int]] = Counter()
    for out in runs.by_loop[loop].outputs:
        decision = json.loads(out.value)
        validate_decision(decision)
        src = decision["source"]
        seen[(src["partition"], src["offset"])] += 1
        record = by_source[(src["partition"], src["offset"])]
        assert src["key"] == (record.key or b"").decode()
        assert out.key == record.key  # keyed like its input: per-card order kept downstream
        want = offline[json.loads(record.value)["tx_id"]]
        got = decision["result"]["fraud_score"]
        assert abs(got - want) <= 1e-6, (loop, src, got, want)
        score = np.float32(got)  # thresholds compare in the model's float32, as streamfer does
        action = "approve"
        if score >= np.float32(thresholds.review):
            action = "decline" if score >= np.float32(thresholds.decline) else "review"
        assert decision["result"]["action"] == action
        assert decision["stream"] == runs.cfg.streams[0].name
    assert seen == Counter(dict.fromkeys(by_source, 1))


def test_plain_tuned_and_stateful_write_the_same_decisions(runs: Runs) -> None:
    def docs(loop: str) -> dict[tuple[int, int], dict[str, object]]:
        out = {}
        for r in runs.by_loop[loop].outputs:
            d = json.loads(r.value)
            d.pop("batch_size")  # 64 vs 100 vs 1 here
            out[(d["source"]["partition"], d["source"]["offset"])] = d
        return out

    assert docs("plain") == docs("tuned") == docs("stateful")

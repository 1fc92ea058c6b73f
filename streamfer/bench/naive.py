"""The per-record handler of the naive baseline, built from streamfer's own parts.

Same codec, featurizer, engine settings, postprocess and decision document as
the pipeline, so the only difference measured is the loop around them:
one record, batch 1, produce, wait for the ack, commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from streamfer.engines.base import Runner
from streamfer.engines.select import create_runner
from streamfer.pipeline.config import PipelineConfig
from streamfer.pipeline.decisions import DecisionEncoder, ModelIdentity, SegmentTiming
from streamfer.pipeline.postprocess import FraudPostprocessor
from streamfer.streams.records import Record


def fraud_runner(cfg: PipelineConfig) -> Runner:
    """The fraud stream's runner exactly as the pipeline creates it (not yet active)."""
    stream = cfg.streams[0]
    model = cfg.models[stream.model]
    return create_runner(
        model.path,
        target=model.target,
        precision=model.precision,
        max_batch=model.max_batch,
        intra_op_threads=model.intra_op_threads,
    )


def fraud_handler(cfg: PipelineConfig, runner: Runner) -> Callable[[Any], bytes]:
    """``handle(kafka-python ConsumerRecord) -> decision bytes`` on an active ``runner``."""
    from streamfer.models.features import FraudFeaturizer
    from streamfer.streams.codecs import decode_transaction

    stream = cfg.streams[0]
    limits = stream.limits.codec_limits()
    featurizer = FraudFeaturizer()
    post = FraudPostprocessor(stream.fraud)
    input_name = runner.input_specs[0].name
    ident = ModelIdentity(
        runner.metadata.get("streamfer.name", runner.name),
        runner.metadata.get("streamfer.version", "unknown"),
        runner.info.kind,
        runner.info.precision,
    )
    encoder = DecisionEncoder(stream.name, stream.kind, ident)

    def handle(msg: Any) -> bytes:
        t0 = time.perf_counter_ns()
        rec = Record(
            msg.topic, msg.partition, msg.offset, msg.key, msg.value,
            tuple(msg.headers or ()), msg.timestamp, time.monotonic_ns(),
        )  # fmt: skip
        tx = decode_transaction(rec, limits)
        row = np.asarray(featurizer.transform(tx), dtype=np.float32)[None, :]
        t1 = time.perf_counter_ns()
        outputs = runner.infer({input_name: row})
        t2 = time.perf_counter_ns()
        result = post.results(outputs, [{"tx_id": tx.get("tx_id")}])[0]
        return encoder.encode(
            rec,
            result,
            batch_size=1,
            broker_ms=max(0.0, rec.consumed_wall_ms - rec.timestamp_ms),
            timing=SegmentTiming(
                queue_ms=0.0,
                preprocess_ms=(t1 - t0) / 1e6,
                infer_ms=(t2 - t1) / 1e6,
                postprocess_ms=(time.perf_counter_ns() - t2) / 1e6,
            ),
        )

    return handle

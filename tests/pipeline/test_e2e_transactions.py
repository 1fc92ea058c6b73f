"""End to end on the real broker: transactions in, one decision each out, offsets committed."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import pytest
from e2e_helpers import (
    MODELS,
    committed,
    decisions,
    produce,
    read_all,
    wait_for,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

from streamfer.engines.base import Runner
from streamfer.engines.select import create_runner
from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config
from streamfer.streams.codecs import encode_transaction, validate_decision

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"),
]


BASE = {("stream", "payments"), ("model", "fraud"), ("engine", "onnxruntime")}


def scrape(url: str) -> str:
    return urlopen(f"{url}/metrics").read().decode()


def tx_messages(n: int, bad_every: int = 0) -> list[tuple[bytes | None, bytes, list]]:
    gen = TransactionGenerator(seed=7)
    out = []
    for i in range(n):
        tx, _ = gen.next()
        value = encode_transaction(tx)
        if bad_every and i % bad_every == bad_every - 1:
            value = b'{"tx_id": "broken", ' if i % 2 else b"[1, 2, 3]"
        out.append((tx["card_id"].encode(), value, []))
    return out


def fraud_stream(src: str, out: str, **kw: object) -> dict:
    return {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud", "batching": {"max_batch": 16, "max_wait_ms": 5}, **kw,
    }  # fmt: skip


def test_every_transaction_is_decided_and_committed(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, group = unique_topic(3), unique_topic(1), unique_group()
    dlq = f"{src}.dlq"
    n = produce(kafka_bootstrap, src, tx_messages(120, bad_every=10))
    cfg = load_config(
        write_config(tmp_path / "p.yaml", kafka_bootstrap, group, [fraud_stream(src, out)],
                     ["fraud"], metrics={"enabled": True, "port": 0, "host": "127.0.0.1"},
                     kafka={"client": client_name})
    )  # fmt: skip
    with Pipeline(cfg) as pipe:
        pipe.wait_ready(30)
        wait_for(lambda: pipe.stats()["payments"].resolved >= n, 60, "all records resolved")
        snap = pipe.stats()["payments"]
        assert pipe.http_url is not None
        assert urlopen(f"{pipe.http_url}/readyz").status == 200
        wait_for(lambda: "streamfer_decisions_published_total" in scrape(pipe.http_url), 5, "")
        text = scrape(pipe.http_url)
    assert snap.consumed == n
    assert snap.decided == 108 and sum(snap.dead_lettered.values()) == 12
    assert set(snap.dead_lettered) == {"bad_json"}
    assert snap.dropped == {}
    assert snap.p99_ms is not None
    samples = {
        (s.name, frozenset(s.labels.items()) - BASE): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if set(s.labels.items()) >= BASE
    }
    assert samples[("streamfer_records_consumed_total", frozenset())] == n
    assert samples[("streamfer_decisions_published_total", frozenset())] == 108
    assert samples[("streamfer_e2e_latency_seconds_count", frozenset())] == 108
    assert (
        samples[("streamfer_records_dead_lettered_total", frozenset({("reason", "bad_json")}))]
        == 12
    )
    assert samples[("streamfer_stage_latency_seconds_count", frozenset({("stage", "infer")}))] > 0

    got = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= 108))
    assert len(got) == 108
    for d in got:
        validate_decision(d)
        assert d["kind"] == "transaction" and d["source"]["topic"] == src
        assert d["result"]["action"] in ("approve", "review", "decline")
    coords = {(d["source"]["partition"], d["source"]["offset"]) for d in got}
    letters = read_all(kafka_bootstrap, dlq, lambda m: len(m) >= 12)
    assert len(letters) == 12
    for m in letters:
        headers = dict(m.headers)
        assert headers["error-reason"] == b"bad_json"
        assert headers["source-topic"] == src.encode()
        coords.add((int(headers["source-partition"]), int(headers["source-offset"])))
    # every input record has exactly one outcome, and the group committed past all of them
    ends = committed(kafka_bootstrap, group, src)
    assert sum(ends.values()) == n
    assert len(coords) == n


class SlowRunner(Runner):
    """A real runner made slow, so the engine falls behind the consumer."""

    def __init__(self, inner: Runner, delay_s: float) -> None:
        super().__init__(inner.name, inner.max_batch)
        self.inner, self.delay_s = inner, delay_s

    input_specs = property(lambda self: self.inner.input_specs)  # type: ignore[assignment]
    output_specs = property(lambda self: self.inner.output_specs)  # type: ignore[assignment]
    metadata = property(lambda self: self.inner.metadata)  # type: ignore[assignment]
    info = property(lambda self: self.inner.info)  # type: ignore[assignment]

    def _activate_impl(self) -> None:
        self.inner.activate()

    def _deactivate_impl(self) -> None:
        self.inner.deactivate()

    def _infer_impl(self, feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        time.sleep(self.delay_s)  # simulated engine time, not a wait for a condition
        return self.inner.infer(feeds)


def test_slow_engine_pauses_partitions_instead_of_buffering(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out, group = unique_topic(2), unique_topic(1), unique_group()
    n = produce(kafka_bootstrap, src, tx_messages(300))
    stream = fraud_stream(src, out, batching={"max_batch": 4, "max_wait_ms": 1})
    cfg = load_config(
        write_config(tmp_path / "p.yaml", kafka_bootstrap, group, [stream], ["fraud"],
                     runtime={"max_in_flight": 16}, consumer={"max_poll_records": 10})
    )  # fmt: skip
    slow = SlowRunner(create_runner(MODELS / "fraud.onnx", target="onnxruntime"), 0.04)
    peak_in_flight = peak_lag = 0
    with Pipeline(cfg, runners={"fraud": slow}) as pipe:
        deadline = time.monotonic() + 60
        while (snap := pipe.stats()["payments"]).resolved < n and time.monotonic() < deadline:
            peak_in_flight = max(peak_in_flight, snap.in_flight)
            peak_lag = max(peak_lag, snap.lag)
            time.sleep(0.01)  # sampling interval
    assert snap.decided == n
    # bounded: inbox (16) + one poll (10) + one batch (4) + a few awaiting their ack
    assert peak_in_flight <= 40, peak_in_flight
    assert peak_lag > 50  # the backlog stayed in Kafka

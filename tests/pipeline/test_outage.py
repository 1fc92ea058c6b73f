"""A broker outage: readiness goes down and comes back, and no input is left without a decision.

The pipeline runs against a broker of this test session's own (``own_broker``),
which the test stops for some seconds and starts again. While it is down:
``/readyz`` answers 503 naming ``broker:<stream>``, ``streamfer_broker_reachable``
is 0, and one line says "broker unreachable since ..."; once it is back: ready
again, one line "broker reachable again after N s; lag M", and every record
produced before and after the outage has a decision. A commit begun while the
broker is down returns within its timeout. On both clients.
"""

from __future__ import annotations

import logging
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import MODELS, config_doc, decisions, produce, read_all, wait_for

from streamfer.errors import StreamError
from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.streams.admin import create_topics
from streamfer.streams.client import ClientFactory, ConsumerOptions
from streamfer.streams.codecs import encode_transaction
from streamfer.streams.local.broker import LocalBroker
from streamfer.streams.records import RecordBatch
from streamfer.streams.settings import KafkaSettings
from streamfer.streams.source import KafkaSource, SourceOptions

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BEFORE, AFTER = 150, 150  # records produced before the outage and after it
TIMEOUT_S = 3.0  # runtime.broker_timeout_s
STATS_S = 1.0  # how often a client proves it reaches the cluster when nothing else does


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def reachable_gauge(base: str, stream: str) -> float | None:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = rf'^streamfer_broker_reachable\{{[^}}]*stream="{stream}"[^}}]*\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


def lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def test_readiness_follows_the_broker_and_every_record_is_decided(
    tmp_path: Path,
    own_broker: LocalBroker,
    unique_group: Callable[[], str],
    client_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bootstrap = own_broker.start()  # idempotent: up, even after a test that failed midway
    group = unique_group()
    src, out = f"tx-{group}", f"decisions-{group}"
    create_topics(bootstrap, {src: 2, out: 2})
    stream = {"name": "tx", "kind": "transaction", "model": "fraud", "input_topic": src,
              "output_topic": out, "batching": {"max_batch": 16, "max_wait_ms": 2}}  # fmt: skip
    doc = config_doc(
        bootstrap, group, [stream], {"fraud": MODELS / "fraud.onnx"},
        kafka={"client": client_name},
        metrics={"enabled": True, "host": "127.0.0.1", "port": 0},
        runtime={"broker_timeout_s": TIMEOUT_S},
    )  # fmt: skip
    gen = TransactionGenerator(seed=21)
    messages = []
    for _ in range(BEFORE + AFTER):
        tx, _ = gen.next()
        messages.append((tx["card_id"].encode(), encode_transaction(tx), []))
    caplog.set_level(logging.WARNING, logger="streamfer.pipeline.readiness")
    with Pipeline(parse_config(doc, "t", tmp_path)) as pipe:
        pipe.wait_ready(30)
        base = pipe.http_url
        assert base is not None
        produce(bootstrap, src, messages[:BEFORE])
        wait_for(lambda: pipe.stats()["tx"].decided >= BEFORE, 60, "the first records decided")
        assert status(f"{base}/readyz") == 200 and reachable_gauge(base, "tx") == 1.0

        stopping = time.monotonic()
        own_broker.stop()
        wait_for(lambda: status(f"{base}/readyz") == 503, 30, "/readyz 503 while it is down")
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
        assert "broker:tx not ready" in not_ready.value.read().decode()
        assert reachable_gauge(base, "tx") == 0.0
        # not at the first hiccup: the time counts from the last sign of life, at most
        # one statistics interval before the broker began to stop
        assert time.monotonic() - stopping >= TIMEOUT_S - STATS_S
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert response.status == 200  # alive: not ready is not dead
        # a commit begun as the broker went can hold the consumer thread, which writes the
        # line, until the group session times out (10 s)
        wait_for(lambda: bool(lines(caplog, "broker unreachable since")), 20, "the line")
        time.sleep(3)  # not a wait for something: the outage lasts, and nothing may change
        assert status(f"{base}/readyz") == 503
        assert len(lines(caplog, "broker unreachable since")) == 1

        own_broker.start()
        produce(bootstrap, src, messages[BEFORE:])
        wait_for(lambda: status(f"{base}/readyz") == 200, 60, "/readyz 200 once it is back")
        assert reachable_gauge(base, "tx") == 1.0
        wait_for(lambda: pipe.stats()["tx"].decided >= len(messages), 60, "every record decided")
        wait_for(lambda: bool(lines(caplog, "broker reachable again")), 10, "the line back")
        assert pipe.failure is None
    (back,) = lines(caplog, "broker reachable again after")
    lag = r"lag ([\d,]+|not known yet \(partitions rejoining\))$"
    assert re.search(rf"^tx \| broker reachable again after \d+ s; {lag}", back), back
    (down,) = lines(caplog, "broker unreachable since")
    assert down.startswith("tx | broker unreachable since")
    got = decisions(read_all(bootstrap, out, lambda m: len(m) >= len(messages)))
    sources = {(d["source"]["partition"], d["source"]["offset"]) for d in got}
    assert len(sources) == len(messages), f"{len(messages) - len(sources)} without a decision"


def test_a_commit_while_the_broker_is_down_returns_within_its_timeout(
    own_broker: LocalBroker, unique_group: Callable[[], str], factory: ClientFactory
) -> None:
    # librdkafka's own synchronous commit would wait for the coordinator for as long as
    # the outage lasts, holding the consumer thread (liveness, lag, the log lines)
    bootstrap = own_broker.start()
    group = unique_group()
    topic = f"t-{group}"
    create_topics(bootstrap, {topic: 1})
    produce(bootstrap, topic, [(b"k", b"v%d" % i, []) for i in range(10)])
    options = SourceOptions(commit_interval_s=3600, commit_timeout_s=2)
    consumer = ConsumerOptions(group_id=group, session_timeout_ms=30_000)
    with KafkaSource(KafkaSettings(bootstrap), [topic], consumer, options, factory) as source:
        got: list[RecordBatch] = []
        deadline = time.monotonic() + 30
        while sum(map(len, got)) < 10 and time.monotonic() < deadline:
            got += source.poll(0.1)
        assert sum(source.tracker.resolve_all(b.span) for b in got) == 10
        own_broker.stop()
        try:
            start = time.monotonic()
            with pytest.raises(StreamError):
                source.commit()
            assert time.monotonic() - start < 2 + 3
        finally:
            own_broker.start()

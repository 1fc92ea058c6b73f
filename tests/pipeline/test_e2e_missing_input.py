"""A pipeline started before its input topic exists waits for it, on the real broker.

* not ready meanwhile: ``/readyz`` names ``topic_missing:<stream>:<topic>``, the gauge
  ``streamfer_input_topic_missing`` is 1, one WARNING says so (not one per check);
* it decides within seconds of the topic appearing, created by a producer's
  auto-creation (the broker's ``auto.create.topics.enable``, on in
  deploy/kafka/server.properties as in a default Kafka) or by an admin; its output
  topics are created then, with the input's partition count;
* several streams in one process: the present one decides meanwhile;
* a topic deleted while running: waiting again, then deciding once it is recreated;
* SIGTERM while waiting: ``streamfer run`` exits 0 at once.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest
from e2e_helpers import (
    MODELS,
    REPO,
    config_doc,
    pipelines_by_stream,
    produce,
    transactions,
    wait_for,
    write_config,
)
from kafka.admin import KafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from streamfer.pipeline import app
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.streams.admin import create_topics, topic_partitions

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"),
]

N = 500
# of the records being produced: well under the clients' metadata refresh (5 minutes), which is
# what a consumer subscribed before its topic existed would wait; not a speed bound (a loaded
# 2-core machine joins a kafka-python group in seconds, not in a fixed time)
DECIDE_WITHIN_S = 60.0
WAITING = "does not exist yet; waiting for it"


def fresh(stem: str) -> str:
    """A topic name nobody created."""
    return f"t-{stem}-{uuid.uuid4().hex[:10]}"


def stream(name: str, src: str, out: str) -> dict[str, Any]:
    return {"name": name, "kind": "transaction", "input_topic": src, "output_topic": out,
            "model": "fraud", "batching": {"max_batch": 32, "max_wait_ms": 2}}  # fmt: skip


def pipeline(tmp_path: Path, bootstrap: str, group: str, streams: list[dict[str, Any]],
             client: str) -> Pipeline:  # fmt: skip
    doc = config_doc(
        bootstrap, group, streams, {"fraud": MODELS / "fraud.onnx"},
        kafka={"client": client}, metrics={"enabled": True, "port": 0, "host": "127.0.0.1"},
    )  # fmt: skip
    return Pipeline(parse_config(doc, "t", tmp_path))


def readyz(pipe: Pipeline) -> tuple[int, list[str]]:
    try:
        with urlopen(f"{pipe.http_url}/readyz", timeout=2) as answer:
            return answer.status, json.loads(answer.read())["problems"]
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())["problems"]


def missing_gauge(pipe: Pipeline, topic: str) -> float | None:
    with urlopen(f"{pipe.http_url}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamfer_input_topic_missing" and sample.labels["topic"] == topic:
                return float(sample.value)
    return None


def stays_not_ready(pipe: Pipeline, problem: str, seconds: float) -> None:
    """``/readyz`` answers 503 naming ``problem`` all along ``seconds`` (several checks)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        code, problems = readyz(pipe)
        assert code == 503 and problem in problems, (code, problems)
        time.sleep(0.2)  # poll interval


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def decided(pipe: Pipeline, name: str) -> int:
    return pipe.stats()[name].decided


def produce_and_time(bootstrap: str, topic: str, seed: int, n: int = N) -> float:
    produce(bootstrap, topic, transactions(n, seed=seed))
    return time.monotonic()


def assert_decided_in_time(pipe: Pipeline, name: str, n: int, since: float) -> None:
    try:
        wait_for(
            lambda: pipe.failure is not None or decided(pipe, name) >= n,
            DECIDE_WITHIN_S + 60,  # a miss is then reported with how late it was
            f"{n} decisions of {name}",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {pipe.stats()[name]}, {pipe.health.readiness()}") from None
    assert pipe.failure is None, pipe.failure
    took = time.monotonic() - since
    assert took <= DECIDE_WITHIN_S, f"{n} decisions took {took:.1f} s after producing"


@pytest.mark.parametrize("creator", ["producer", "admin"])
def test_a_run_waits_for_its_input_topic_and_decides_once_it_appears(
    creator: str,
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_group: Callable[[], str],
    client_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    src, out = fresh("in"), fresh("out")
    problem = f"topic_missing:payments:{src}"
    pipe = pipeline(tmp_path, kafka_bootstrap, unique_group(), [stream("payments", src, out)],
                    client_name)  # fmt: skip
    pipe.start()
    try:
        wait_for(lambda: problem in readyz(pipe)[1], 10, "/readyz to name the missing topic")
        assert missing_gauge(pipe, src) == 1.0
        stays_not_ready(pipe, problem, 3.0)
        # nothing guessed: neither the input nor the outputs were created meanwhile
        assert topic_partitions(kafka_bootstrap, [src, out, f"{src}.dlq"]) == {}
        partitions = 1  # the broker's num.partitions, for an auto-created topic
        if creator == "admin":
            partitions = 3
            create_topics(kafka_bootstrap, {src: partitions})
        produced = produce_and_time(kafka_bootstrap, src, seed=5)
        assert_decided_in_time(pipe, "payments", N, produced)
        wait_for(lambda: readyz(pipe)[0] == 200, 10, "ready")
        assert missing_gauge(pipe, src) == 0.0
        assert topic_partitions(kafka_bootstrap, [src, out, f"{src}.dlq"]) == {
            src: partitions, out: partitions, f"{src}.dlq": partitions,
        }  # fmt: skip
    finally:
        pipe.stop()
    assert warnings(caplog, f"payments | input topic {src} {WAITING}") == 1
    assert warnings(caplog, "still waiting") == 0
    assert warnings(caplog, "Subscribed topic not available") == 0
    appeared = [r.getMessage() for r in caplog.records if "exists now" in r.getMessage()]
    assert len(appeared) == 1 and appeared[0].startswith(f"payments | input topic {src} exists")


def test_several_streams_one_waiting_while_the_other_decides(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    present, missing = unique_topic(2), fresh("in")
    streams = [stream("present", present, fresh("out")), stream("missing", missing, fresh("out"))]
    pipes = pipelines_by_stream(
        kafka_bootstrap, streams, {"fraud": MODELS / "fraud.onnx"}, client_name, unique_group,
        tmp_path,
    )  # fmt: skip
    started = {id(p): p for p, _ in pipes.values()}.values()
    for pipe in started:
        pipe.start()
    try:
        one, other = pipes["present"][0], pipes["missing"][0]
        produce(kafka_bootstrap, present, transactions(100, seed=1))
        wait_for(lambda: decided(one, "present") >= 100, 60, "the present stream deciding")
        problems = other.health.readiness().problems
        assert f"topic_missing:missing:{missing}" in problems
        assert f"topic_missing:present:{present}" not in one.health.readiness().problems
        produced = produce_and_time(kafka_bootstrap, missing, seed=2)
        assert_decided_in_time(other, "missing", N, produced)
        produce(kafka_bootstrap, present, transactions(100, seed=3))
        wait_for(lambda: decided(one, "present") >= 200, 60, "the present stream deciding on")
        wait_for(lambda: all(p.ready for p in started), 30, "every stream ready")
    finally:
        for pipe in started:
            pipe.stop()


def test_a_deleted_input_topic_is_waited_for_and_decisions_resume_once_recreated(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    src = unique_topic(2)
    problem = f"topic_missing:payments:{src}"
    pipe = pipeline(tmp_path, kafka_bootstrap, unique_group(),
                    [stream("payments", src, fresh("out"))], client_name)  # fmt: skip
    pipe.start()
    try:
        produce(kafka_bootstrap, src, transactions(100, seed=1))
        wait_for(lambda: decided(pipe, "payments") >= 100, 60, "the first decisions")
        assert missing_gauge(pipe, src) == 0.0
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_topics([src], timeout_ms=30_000)
        finally:
            admin.close()
        wait_for(lambda: problem in readyz(pipe)[1], 60, "/readyz to name the deleted topic")
        assert missing_gauge(pipe, src) == 1.0
        create_topics(kafka_bootstrap, {src: 2})
        produced = produce_and_time(kafka_bootstrap, src, seed=2)
        assert_decided_in_time(pipe, "payments", 100 + N, produced)
        wait_for(lambda: readyz(pipe)[0] == 200, 10, "ready again")
        assert missing_gauge(pipe, src) == 0.0
    finally:
        pipe.stop()
    assert warnings(caplog, f"payments | input topic {src} was deleted") == 1


def test_sigterm_while_waiting_exits_0_at_once(
    tmp_path: Path, kafka_bootstrap: str, unique_group: Callable[[], str], client_name: str
) -> None:
    src = fresh("never")
    cfg = write_config(
        tmp_path / "p.yaml", kafka_bootstrap, unique_group(),
        [stream("payments", src, fresh("out"))], ["fraud"], kafka={"client": client_name},
    )  # fmt: skip
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamfer.pipeline.cli", "run", "-c", str(cfg)],
        cwd=REPO,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: WAITING in log.read_text(), 60, "the run to say it waits")
    except AssertionError:
        proc.kill()
        raise AssertionError(log.read_text()[-3000:]) from None
    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - asked
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert took < 5.0, f"stopped {took:.1f} s after SIGTERM"
    assert text.count(WAITING) == 1, text[-3000:]
    assert topic_partitions(kafka_bootstrap, [src]) == {}  # nothing created it


def test_an_input_created_between_the_topic_check_and_the_stream_start_gets_its_outputs(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_group: Callable[[], str],
    client_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pipeline's topic check leaves out a stream whose input is missing; when the input
    appears before that stream's consumer first looks (a producer quicker than the start),
    the stream still creates its outputs sized like the input before it consumes."""
    src, out = fresh("in"), fresh("out")
    checked = app.ensure_output_topics

    def check_then_create(config: Any, *args: Any, **kwargs: Any) -> list[str]:
        created = checked(config, *args, **kwargs)
        create_topics(kafka_bootstrap, {src: 3})  # in the window before the stream starts
        return created

    monkeypatch.setattr(app, "ensure_output_topics", check_then_create)
    pipe = pipeline(tmp_path, kafka_bootstrap, unique_group(), [stream("payments", src, out)],
                    client_name)  # fmt: skip
    pipe.start()
    try:
        produced = produce_and_time(kafka_bootstrap, src, seed=9)
        assert_decided_in_time(pipe, "payments", N, produced)
    finally:
        pipe.stop()
    assert topic_partitions(kafka_bootstrap, [src, out, f"{src}.dlq"]) == {
        src: 3, out: 3, f"{src}.dlq": 3,
    }  # fmt: skip

"""Waiting for a missing input topic (streamfer.pipeline.inputs), without a broker."""

from __future__ import annotations

import itertools
import logging
import threading

import pytest

from streamfer.pipeline.health import HealthState
from streamfer.pipeline.inputs import UNASSIGNED_FIRST_S, UNASSIGNED_MOST_S, InputTopic
from streamfer.pipeline.metrics import Metrics


class Cluster:
    """The topic's partition count as the cluster would answer (None: missing); counts
    how often it was asked, on an injected clock."""

    def __init__(self, partitions: int | None) -> None:
        self.partitions = partitions
        self.asked = 0
        self.now = 100.0

    def exists(self) -> int | None:
        self.asked += 1
        return self.partitions


def watch(cluster: Cluster) -> tuple[InputTopic, HealthState, Metrics]:
    health = HealthState(())
    metrics = Metrics(process_collectors=False)
    recorder = metrics.stream("payments", model="fraud", engine="onnxruntime")
    topic = InputTopic(
        "payments", "payments.tx", cluster.exists, health, recorder,
        clock=lambda: cluster.now, check_every_s=0.0,
    )  # fmt: skip
    return topic, health, metrics


def gauge(metrics: Metrics) -> float | None:
    labels = {"stream": "payments", "model": "fraud", "engine": "onnxruntime",
              "topic": "payments.tx"}  # fmt: skip
    return metrics.registry.get_sample_value("streamfer_input_topic_missing", labels)


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(
        text in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    )


def test_a_missing_topic_is_said_once_then_once_a_minute_and_clears_when_it_appears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamfer.pipeline.inputs")
    cluster = Cluster(None)
    topic, health, metrics = watch(cluster)
    stop = threading.Event()
    assert not topic.present()
    for _ in range(50):  # checks every second for 50 s: no more lines
        cluster.now += 1
        assert not topic.wait(stop)
    assert warnings(caplog, "input topic payments.tx does not exist yet; waiting") == 1
    assert warnings(caplog, "still waiting") == 0
    assert health.readiness().problems == ("topic_missing:payments:payments.tx",)
    assert gauge(metrics) == 1.0
    cluster.now += 11  # a minute after it was found missing: one reminder
    assert not topic.wait(stop)
    assert not topic.wait(stop)
    assert warnings(caplog, "still waiting for input topic payments.tx (missing for 61 s)") == 1
    cluster.partitions = 3
    assert topic.wait(stop)
    assert health.readiness().ok
    assert gauge(metrics) == 0.0
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [
        "payments | input topic payments.tx exists now (3 partitions) after 61 s of waiting; "
        "consuming"
    ]


def test_waiting_ends_at_once_on_stop() -> None:
    topic, _, _ = watch(Cluster(None))
    topic.check_every_s = 60.0
    stop = threading.Event()
    stop.set()
    assert not topic.wait(stop)  # returns without waiting a minute


def test_an_existing_topic_is_not_reported() -> None:
    cluster = Cluster(2)
    topic, health, metrics = watch(cluster)
    assert topic.present()
    assert health.readiness().ok
    assert gauge(metrics) == 0.0


def test_deletion_is_asked_about_only_without_partitions_and_less_and_less_often(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = Cluster(2)
    topic, health, metrics = watch(cluster)
    for _ in range(1000):  # partitions assigned: nothing is asked, however long
        cluster.now += 0.5
        assert not topic.deleted(assigned=True)
    assert cluster.asked == 0
    asked_at = []
    for _ in range(400):  # 200 s without partitions, the topic still there
        cluster.now += 0.5
        before = cluster.asked
        assert not topic.deleted(assigned=False)
        if cluster.asked > before:
            asked_at.append(cluster.now)
    gaps = [b - a for a, b in itertools.pairwise(asked_at)]
    assert asked_at[0] - 100.0 - 500.0 <= UNASSIGNED_FIRST_S + 0.5
    assert gaps == sorted(gaps) and max(gaps) <= UNASSIGNED_MOST_S + 0.5
    assert len(asked_at) < 15
    cluster.partitions = None  # deleted
    while not topic.deleted(assigned=False):
        cluster.now += 0.5
    assert health.readiness().ok  # said once the consumer is closed
    topic.lost()
    assert health.readiness().problems == ("topic_missing:payments:payments.tx",)
    assert gauge(metrics) == 1.0
    assert warnings(caplog, "input topic payments.tx was deleted; waiting") == 1


def test_an_unknown_topic_report_with_partitions_assigned_is_checked() -> None:
    """librdkafka keeps a deleted topic's partitions assigned and only reports it unknown."""
    cluster = Cluster(None)
    topic, health, _ = watch(cluster)
    assert not topic.deleted(assigned=True, suspect=True)  # asks a second later
    assert cluster.asked == 0
    cluster.now += UNASSIGNED_FIRST_S
    assert topic.deleted(assigned=True, suspect=True)
    assert cluster.asked == 1
    topic.lost()
    assert not health.readiness().ok

"""Latency profiles: each profile sets each knob, for both clients; explicit keys win."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamfer.pipeline.config import PipelineConfig, parse_config
from streamfer.pipeline.latency import PROFILES, LatencyKnobs, LatencyProfile
from streamfer.streams import confluent, kafka_python
from streamfer.streams.confluent import consumer as confluent_consumer
from streamfer.streams.confluent import producer as confluent_producer
from streamfer.streams.kafka_python import consumer as kafka_python_consumer
from streamfer.streams.kafka_python import producer as kafka_python_producer

REPO = Path(__file__).resolve().parents[2]
FRAUD = REPO / "streamfer" / "models" / "fraud.onnx"


def config(stream: dict[str, Any] | None = None, **sections: Any) -> PipelineConfig:
    s = {"name": "s", "kind": "transaction", "input_topic": "in", "output_topic": "out",
         "model": "m", **(stream or {})}  # fmt: skip
    doc = {"models": {"m": {"path": str(FRAUD)}}, "streams": [s], **sections}
    return parse_config(doc, "t.yaml")


class Captured(BaseException):
    """Raised by a library double once it has recorded what it was given."""

    def __init__(self, given: dict[str, Any]) -> None:
        super().__init__()
        self.given = given


def recorder(*args: Any, **kwargs: Any) -> None:
    raise Captured(args[0] if args else kwargs)


@pytest.fixture
def doubles(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for module, name in ((confluent_consumer, "Consumer"), (confluent_producer, "Producer"),
                         (kafka_python_consumer, "KafkaConsumer"),
                         (kafka_python_producer, "KafkaProducer")):  # fmt: skip
        monkeypatch.setattr(module, name, recorder)
    for module in (confluent_consumer, confluent_producer):
        monkeypatch.setattr(module, "check_login", lambda *a, **k: None)
    yield


def given_to_library(cfg: PipelineConfig, client: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the consumer and producer libraries get from the stream's options: the
    normalised (linger, fetch wait, fetch min bytes) of each."""
    s = cfg.streams[0]
    factory: Any = (
        confluent.ConfluentFactory() if client == "confluent" else kafka_python.KafkaPythonFactory()
    )
    settings = cfg.kafka.to_settings()
    with pytest.raises(Captured) as consumer:
        factory.consumer(settings, ["in"], cfg.consumer.options(s.knobs), lambda *a: {},
                         lambda *a: None)  # fmt: skip
    with pytest.raises(Captured) as producer:
        factory.producer(settings, cfg.producer.options(s.knobs))
    c, p = consumer.value.given, producer.value.given
    if client == "confluent":
        return ({"fetch_max_wait_ms": c["fetch.wait.max.ms"],
                 "fetch_min_bytes": c["fetch.min.bytes"]},
                {"linger_ms": p["linger.ms"]})  # fmt: skip
    return ({"fetch_max_wait_ms": c["fetch_max_wait_ms"], "fetch_min_bytes": c["fetch_min_bytes"]},
            {"linger_ms": p["linger_ms"]})  # fmt: skip


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_each_profile_sets_each_knob_for_both_clients(
    doubles: None, client: str, profile: LatencyProfile
) -> None:
    cfg = config({"latency": {"profile": profile}})
    want = PROFILES[profile]
    consumer, producer = given_to_library(cfg, client)
    assert consumer == {"fetch_max_wait_ms": want.fetch_max_wait_ms,
                        "fetch_min_bytes": want.fetch_min_bytes}  # fmt: skip
    assert producer == {"linger_ms": want.linger_ms}
    # the batcher's wait and the committer's interval (StreamRuntime.start reads both here)
    assert cfg.streams[0].knobs == want
    assert cfg.streams[0].batching.max_wait_ms == want.batch_wait_ms


def test_profiles_differ_in_every_knob() -> None:
    """Else a profile would not set that knob at all (a test above could not tell)."""
    low, balanced, throughput = (PROFILES[p] for p in ("low", "balanced", "throughput"))
    for knob in LatencyKnobs.__dataclass_fields__:
        if knob == "fetch_min_bytes":
            assert getattr(low, knob) < getattr(throughput, knob)
            continue
        assert getattr(low, knob) < getattr(balanced, knob) < getattr(throughput, knob), knob


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_explicit_keys_override_the_profile(doubles: None, client: str) -> None:
    stream_keys = {"linger_ms": 3, "fetch_max_wait_ms": 7, "fetch_min_bytes": 11,
                   "commit_interval_ms": 13}  # fmt: skip
    cfg = config({"latency": {"profile": "throughput", **stream_keys},
                  "batching": {"max_wait_ms": 2.5}})  # fmt: skip
    assert cfg.streams[0].knobs == LatencyKnobs(
        linger_ms=3, batch_wait_ms=2.5, fetch_max_wait_ms=7, fetch_min_bytes=11,
        commit_interval_ms=13,
    )  # fmt: skip
    assert given_to_library(cfg, client) == (
        {"fetch_max_wait_ms": 7, "fetch_min_bytes": 11}, {"linger_ms": 3}
    )


def test_pipeline_wide_keys_win_over_the_profile_and_lose_to_the_streams() -> None:
    wide = {"producer": {"linger_ms": 4}, "consumer": {"fetch_max_wait_ms": 9},
            "runtime": {"commit_interval_ms": 300}}  # fmt: skip
    knobs = config({"latency": {"profile": "low"}}, **wide).streams[0].knobs
    assert (knobs.linger_ms, knobs.fetch_max_wait_ms, knobs.commit_interval_ms) == (4, 9, 300)
    assert knobs.batch_wait_ms == PROFILES["low"].batch_wait_ms  # not set anywhere: the profile's
    mine = config({"latency": {"linger_ms": 2, "commit_interval_ms": 20}}, **wide).streams[0]
    assert (mine.knobs.linger_ms, mine.knobs.commit_interval_ms) == (2, 20)
    assert mine.knobs.fetch_max_wait_ms == 9


@pytest.mark.parametrize(
    ("kind", "extra", "profile"),
    [
        ("transaction", {}, "low"),
        ("camera", {}, "low"),
        ("sensor", {}, "balanced"),
    ],
)
def test_default_profile_by_kind(kind: str, extra: dict[str, Any], profile: str) -> None:
    s = config({"kind": kind, **extra}).streams[0]
    assert s.latency_profile == profile and s.latency.profile == profile
    assert s.knobs == PROFILES[profile]  # type: ignore[index]


def test_an_unknown_profile_is_refused_with_the_choices() -> None:
    from streamfer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"streams\[0\]\.latency\.profile.*fast"):
        config({"latency": {"profile": "fast"}})

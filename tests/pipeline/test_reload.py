"""The model reloader without Kafka: real ONNX Runtime runners, streams stood in for.

Each bad version is refused with its reason while the serving one stays; a good one is
swapped in; the metrics say so.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from e2e_helpers import MODELS
from tiny_models import constant_fraud_model

from streamfer.engines.base import Runner
from streamfer.pipeline.config import ModelConfig
from streamfer.pipeline.handoff import InferFn, Swap
from streamfer.pipeline.metrics import Metrics
from streamfer.pipeline.reload import ModelReloader, Served, load

FRAUD = MODELS / "fraud.onnx"


class Stream:
    """A stream using the model: takes a swap at once (an idle engine thread)."""

    def __init__(self, name: str, feeds: dict[str, np.ndarray] | None = None) -> None:
        self.name = name
        self.engine_alive = True
        self.feeds = feeds
        self.serving: list[str] = []

    def wire(self, runner: Runner) -> InferFn:
        return runner.infer

    def warmup_feeds(self) -> dict[str, np.ndarray] | None:
        return self.feeds

    def offer_swap(self, swap: Swap) -> bool:
        swap.applied()
        swap.done.set()
        return True

    def withdraw_swap(self) -> Swap | None:
        return None

    def swapped(self, served: Served) -> None:
        self.serving.append(served.label)


class Setup:
    def __init__(self, root: Path, policy: str = "latest") -> None:
        self.root = root
        self.version("1", lambda p: shutil.copyfile(FRAUD, p))
        self.config = ModelConfig(path=root, version=policy, max_batch=32)
        self.metrics = Metrics(process_collectors=False)
        self.served = {"fraud": load("fraud", self.config)}
        self.old_runner = self.served["fraud"].runner
        feeds = {"features": np.random.default_rng(0).random((40, 20), dtype=np.float32)}
        self.streams = [Stream("a", feeds), Stream("b")]
        self.reloader = ModelReloader(
            self.served, lambda model: self.streams, self.metrics, lambda: {"fraud": self.config}
        )

    def version(self, name: str, write: Callable[[Path], object] | None) -> Path:
        d = self.root / name
        d.mkdir(parents=True)
        if write is not None:
            write(d / "model.onnx")
        return d

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def failed(self) -> float:
        return self.value("streamfer_model_reloads_total", model="fraud", result="failed")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = Setup(tmp_path / "fraud")
    yield s
    for served in s.served.values():
        served.runner.deactivate()


def test_a_new_version_is_swapped_into_every_stream_and_the_old_runner_released(
    setup: Setup,
) -> None:
    setup.version("2", lambda p: constant_fraud_model(p, 0.25))
    [outcome] = setup.reloader.reload("test")
    assert (outcome.result, outcome.version) == ("ok", "2")
    assert [s.serving for s in setup.streams] == [["2"], ["2"]]
    assert setup.served["fraud"].label == "2" and setup.served["fraud"].identity.version == "2"
    assert not setup.old_runner.is_active
    out = setup.served["fraud"].runner.infer({"features": np.zeros((3, 20), np.float32)})
    assert np.allclose(out["score"], 0.25)
    assert setup.value("streamfer_model_reloads_total", model="fraud", result="ok") == 1
    assert setup.value("streamfer_model_info", model="fraud", version="2",
                       engine="onnxruntime") == 1  # fmt: skip
    assert setup.reloader.reload("again: nothing changed") == []


def test_rollback_is_pinning_the_old_version(setup: Setup) -> None:
    setup.version("2", lambda p: constant_fraud_model(p, 0.25))
    setup.reloader.reload("test")
    setup.config = ModelConfig(path=setup.root, version="1", max_batch=32)
    [outcome] = setup.reloader.reload("rollback")
    assert (outcome.result, outcome.version) == ("ok", "1")
    assert setup.streams[0].serving == ["2", "1"]
    setup.metrics.model_info(model="fraud", version="1", engine="onnxruntime")
    assert setup.value("streamfer_model_info", model="fraud", version="2",
                       engine="onnxruntime") == 0  # fmt: skip


BAD_VERSIONS: dict[str, tuple[Callable[[Path], object] | None, str]] = {
    "empty": (None, r"version 2 has no model\.onnx"),
    "corrupt": (lambda p: p.write_bytes(b"\x08\x07 not an onnx model"), "cannot be loaded"),
    "truncated": (lambda p: p.write_bytes(FRAUD.read_bytes()[: FRAUD.stat().st_size // 2]),
                  "cannot be loaded"),
    "inputs": (lambda p: constant_fraud_model(p, 0.25, features=5),
               r"inputs 'features' float32 \[N, 5\] do not fit the processor"),
    "nan": (lambda p: constant_fraud_model(p, float("nan")),
            r"output 'score' holds 8 NaN or infinite values of 8 on the warm-up batch"),
}  # fmt: skip


@pytest.mark.parametrize("bad", sorted(BAD_VERSIONS))
def test_a_bad_version_is_refused_with_its_reason_and_the_old_one_keeps_serving(
    setup: Setup, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    write, reason = BAD_VERSIONS[bad]
    setup.version("2", write)
    [outcome] = setup.reloader.reload("test")
    assert outcome.result == "failed"
    assert re.search(reason, outcome.reason), outcome.reason
    assert re.search(reason, caplog.text) and "version 1 keeps serving" in caplog.text
    assert setup.failed() == 1
    assert setup.served["fraud"].label == "1" and setup.old_runner.is_active
    assert [s.serving for s in setup.streams] == [[], []]
    out = setup.old_runner.infer({"features": np.zeros((2, 20), np.float32)})
    assert out["score"].shape == (2, 1)


def test_a_config_that_no_longer_parses_changes_nothing(setup: Setup) -> None:
    from streamfer.errors import ConfigError

    def broken() -> Mapping[str, ModelConfig]:
        raise ConfigError("p.yaml: models.fraud.version | bad")

    setup.reloader.models_source = broken
    [outcome] = setup.reloader.reload("test")
    assert outcome.result == "failed" and "config not re-read" in outcome.reason
    assert setup.served["fraud"].label == "1" and setup.failed() == 1


def test_a_poll_sees_a_new_version_and_swaps_it_in(setup: Setup) -> None:
    setup.config = ModelConfig(path=setup.root, poll_s=0.05, max_batch=32)
    setup.reloader.reload("read the polled config")
    setup.reloader.start()
    try:
        tmp = setup.version(".2-tmp", lambda p: constant_fraud_model(p, 0.25))
        tmp.rename(setup.root / "2")  # how a version should appear: whole, at once
        end = time.monotonic() + 20
        while setup.served["fraud"].label != "2":
            assert time.monotonic() < end, "the polled version was not swapped in"
            time.sleep(0.05)  # poll interval
    finally:
        setup.reloader.close()
    assert [o.result for o in setup.reloader.outcomes()] == ["ok"]


def test_requests_while_one_is_queued_merge_into_it(setup: Setup) -> None:
    assert setup.reloader.request("first")
    assert not setup.reloader.request("second")  # the thread is not running: one queued


def test_a_version_that_appears_during_a_swap_is_queued_and_swapped_in_after(
    setup: Setup,
) -> None:
    busy, release = threading.Event(), threading.Event()
    offer = setup.streams[0].offer_swap

    def slow_offer(swap: Swap) -> bool:  # an engine thread in the middle of a long batch
        busy.set()
        assert release.wait(10)
        return offer(swap)

    setup.streams[0].offer_swap = slow_offer  # type: ignore[method-assign]
    setup.version("2", lambda p: constant_fraud_model(p, 0.25))
    setup.reloader.start()
    try:
        assert setup.reloader.request("SIGHUP")
        assert busy.wait(10)  # version 2 is being swapped in
        setup.version("3", lambda p: constant_fraud_model(p, 0.5))
        assert setup.reloader.request("SIGHUP: version 3")  # queued behind the swap
        release.set()
        end = time.monotonic() + 20
        while len(setup.reloader.outcomes()) < 2:
            assert time.monotonic() < end, setup.reloader.outcomes()
            time.sleep(0.05)  # poll interval
    finally:
        release.set()
        setup.reloader.close()
    assert [(o.result, o.version) for o in setup.reloader.outcomes()] == [("ok", "2"), ("ok", "3")]
    assert setup.streams[0].serving == ["2", "3"]


def test_a_smaller_max_batch_is_refused(setup: Setup) -> None:
    setup.config = ModelConfig(path=setup.root, max_batch=8)
    [outcome] = setup.reloader.reload("test")
    assert outcome.result == "failed" and "max_batch 8 is below the 32" in outcome.reason
    assert setup.served["fraud"].label == "1" and setup.old_runner.is_active

"""A new model version swapped into a running fraud pipeline, on the real broker.

Under a steady load on 3 partitions: every record decided once, each partition's
decisions switch version exactly once in offset order, each decision scored by the
version it names, the new version deciding within seconds of the reload. Bad versions
are refused while the old one keeps deciding.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from e2e_helpers import (
    MODELS,
    committed,
    config_doc,
    decisions,
    produce,
    read_all,
    transactions,
    trickle,
    wait_for,
)
from tiny_models import constant_fraud_model

from streamfer.engines.base import Runner
from streamfer.engines.select import create_runner
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config, parse_config
from streamfer.pipeline.reload import ReloadOutcome

pytestmark = pytest.mark.integration

FRAUD = MODELS / "fraud.onnx"
NEW_SCORE = 0.25  # version 2 scores every transaction this: its decisions are recognisable
SWAP_WITHIN_S = 5.0


def _setup(tmp_path: Path, bootstrap: str, group: str, src: str, out: str, delivery: str
           ) -> tuple[Path, Pipeline]:  # fmt: skip
    versions = tmp_path / "fraud"
    (versions / "1").mkdir(parents=True)
    shutil.copyfile(FRAUD, versions / "1" / "model.onnx")
    stream = {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud", "delivery": delivery, "batching": {"max_batch": 16, "max_wait_ms": 5},
    }  # fmt: skip
    doc = config_doc(bootstrap, group, [stream], {"fraud": versions},
                     metrics={"enabled": True, "port": 0, "host": "127.0.0.1"})  # fmt: skip
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    pipe = Pipeline(load_config(path), models_source=lambda: load_config(path).models)
    return versions, pipe


def _write_version(versions: Path, name: str, write: Callable[[Path], object] | None) -> None:
    """As an operator should: under a hidden name, renamed when complete."""
    tmp = versions / f".{name}-tmp"
    tmp.mkdir()
    if write is not None:
        write(tmp / "model.onnx")
    tmp.rename(versions / name)


def _outcomes(pipe: Pipeline, n: int) -> list[ReloadOutcome]:
    wait_for(lambda: len(pipe.reload_outcomes()) >= n, 60, f"{n} reload outcomes")
    return pipe.reload_outcomes()


def _by_partition(got: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    parts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in got:
        parts[d["source"]["partition"]].append(d)
    return parts


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_a_new_version_swaps_in_under_load_without_losing_or_repeating_a_decision(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    delivery: str,
) -> None:
    src, out = unique_topic(3), unique_topic(1)
    versions, pipe = _setup(tmp_path, kafka_bootstrap, unique_group(), src, out, delivery)
    messages = transactions(900, seed=11, n_cards=60)
    with pipe:
        pipe.wait_ready(60)
        with trickle(kafka_bootstrap, src, messages, per_s=150):
            wait_for(lambda: pipe.stats()["payments"].decided >= 150, 60, "150 decisions")
            _write_version(versions, "2", lambda p: constant_fraud_model(p, NEW_SCORE))
            asked_ms = time.time() * 1000  # compared with the decisions' Kafka timestamps
            assert pipe.request_reload("SIGHUP")
            [outcome] = _outcomes(pipe, 1)
            assert (outcome.result, outcome.version) == ("ok", "2"), outcome
            assert pipe.serving() == {"fraud": "2"}
        wait_for(lambda: pipe.stats()["payments"].resolved >= len(messages), 90, "all resolved")
        registry = pipe.metrics.registry
        assert registry.get_sample_value(
            "streamfer_model_reloads_total", {"model": "fraud", "result": "ok"}
        ) == 1  # fmt: skip
        info = {"model": "fraud", "engine": "onnxruntime"}
        assert registry.get_sample_value("streamfer_model_info", {**info, "version": "2"}) == 1
        assert registry.get_sample_value("streamfer_model_info", {**info, "version": "1"}) is None
    isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
    msgs = read_all(kafka_bootstrap, out, lambda m: len(m) >= len(messages), 60, isolation)
    got = decisions(msgs)
    coords = [(d["source"]["partition"], d["source"]["offset"]) for d in got]
    assert len(set(coords)) == len(messages), "a record without a decision"
    assert len(coords) == len(set(coords)), "a record decided twice"
    for d in got:  # each decision scored by the version it names
        version, score = d["model"]["version"], d["result"]["fraud_score"]
        assert (version, score == NEW_SCORE) in {("1", False), ("2", True)}, d
    parts = _by_partition(got)
    assert set(parts) == {0, 1, 2}
    for partition, ds in parts.items():
        offsets = [d["source"]["offset"] for d in ds]
        assert offsets == sorted(offsets), f"partition {partition}: decisions out of order"
        names = [d["model"]["version"] for d in ds]
        switch = names.index("2")
        assert names == ["1"] * switch + ["2"] * (len(names) - switch), (
            f"partition {partition}: versions {names}"
        )
        assert switch > 0
    first_new_ms = min(m.timestamp for m, d in zip(msgs, got, strict=True)
                       if d["model"]["version"] == "2")  # fmt: skip
    assert first_new_ms - asked_ms < SWAP_WITHIN_S * 1000


BAD = [
    ("empty", None, r"version 2 has no model\.onnx"),
    ("corrupt", lambda p: p.write_bytes(b"\x08\x07 not an onnx model"), "cannot be loaded"),
    ("truncated", lambda p: p.write_bytes(FRAUD.read_bytes()[: FRAUD.stat().st_size // 2]),
     "cannot be loaded"),
    ("inputs", lambda p: constant_fraud_model(p, NEW_SCORE, features=5),
     "do not fit the processor"),
    ("nan", lambda p: constant_fraud_model(p, float("nan")), "NaN or infinite values"),
]  # fmt: skip


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_bad_versions_are_refused_while_the_old_one_keeps_deciding(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    delivery: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    src, out = unique_topic(3), unique_topic(1)
    versions, pipe = _setup(tmp_path, kafka_bootstrap, unique_group(), src, out, delivery)
    messages = transactions(1500, seed=12, n_cards=60)
    with pipe:
        pipe.wait_ready(60)
        with trickle(kafka_bootstrap, src, messages, per_s=150):
            for i, (what, write, reason) in enumerate(BAD, start=1):
                _write_version(versions, "2", write)
                assert pipe.request_reload("SIGHUP")
                outcome = _outcomes(pipe, i)[-1]
                assert outcome.result == "failed", (what, outcome)
                assert re.search(reason, outcome.reason), (what, outcome.reason)
                decided = pipe.stats()["payments"].decided
                wait_for(lambda d=decided: pipe.stats()["payments"].decided > d + 20, 30,
                         f"decisions after the {what} version was refused")  # fmt: skip
                shutil.rmtree(versions / "2")
        wait_for(lambda: pipe.stats()["payments"].resolved >= len(messages), 90, "all resolved")
        failed = pipe.metrics.registry.get_sample_value(
            "streamfer_model_reloads_total", {"model": "fraud", "result": "failed"}
        )
        assert failed == len(BAD)
        assert pipe.metrics.registry.get_sample_value(
            "streamfer_model_info", {"model": "fraud", "version": "1", "engine": "onnxruntime"}
        ) == 1  # fmt: skip
    assert caplog.text.count("version 1 keeps serving") == len(BAD)
    isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
    got = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= len(messages), 60,
                             isolation))  # fmt: skip
    coords = {(d["source"]["partition"], d["source"]["offset"]) for d in got}
    assert len(coords) == len(got) == len(messages)
    assert {d["model"]["version"] for d in got} == {"1"}


def test_sighup_to_streamfer_run_swaps_the_pinned_version_and_back(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    """The operator's way: pin a version in the file, SIGHUP; roll back the same way."""
    src, out = unique_topic(1), unique_topic(1)
    versions, _ = _setup(tmp_path, kafka_bootstrap, unique_group(), src, out, "at_least_once")
    _write_version(versions, "2", lambda p: constant_fraud_model(p, NEW_SCORE))
    path = tmp_path / "p.yaml"

    def pin(version: str) -> None:
        doc = yaml.safe_load(path.read_text())
        doc["models"]["fraud"]["version"] = version
        path.write_text(yaml.safe_dump(doc))

    pin("1")
    log = tmp_path / "run.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamfer.pipeline.cli", "run", "-c", str(path)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        phases = []
        for i, version in enumerate(["1", "2", "1"]):
            if i:
                pin(version)
                proc.send_signal(signal.SIGHUP)
                line = f"version {version} serving (was {phases[-1]}"
                wait_for(lambda line=line: line in log.read_text(), 60, line)
            produce(kafka_bootstrap, src, transactions(50, seed=20 + i))
            wait_for(
                lambda n=50 * (i + 1): len(read_all(kafka_bootstrap, out, lambda m: len(m) >= n,
                                                    timeout_s=2)) >= n,
                60, f"{50 * (i + 1)} decisions",
            )  # fmt: skip
            phases.append(version)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    got = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= 150))
    got.sort(key=lambda d: d["source"]["offset"])
    assert [d["model"]["version"] for d in got] == ["1"] * 50 + ["2"] * 50 + ["1"] * 50
    assert "refused" not in log.read_text()


class FailingRunner(Runner):
    """The fraud model as a shadow that fails on every batch."""

    def __init__(self, inner: Runner) -> None:
        super().__init__(inner.name, inner.max_batch)
        self.inner = inner

    input_specs = property(lambda self: self.inner.input_specs)  # type: ignore[assignment]
    output_specs = property(lambda self: self.inner.output_specs)  # type: ignore[assignment]
    metadata = property(lambda self: self.inner.metadata)  # type: ignore[assignment]
    info = property(lambda self: self.inner.info)  # type: ignore[assignment]

    def _activate_impl(self) -> None:
        self.inner.activate()

    def _deactivate_impl(self) -> None:
        self.inner.deactivate()

    def _infer_impl(self, feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        raise RuntimeError("shadow device lost")


@pytest.mark.parametrize("failing", [False, True], ids=["shadow", "failing-shadow"])
def test_a_shadow_scores_beside_the_primary_and_a_failing_one_holds_nothing_back(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    failing: bool,
) -> None:
    src, out, side, group = unique_topic(3), unique_topic(1), unique_topic(1), unique_group()
    candidate = constant_fraud_model(tmp_path / "candidate.onnx", NEW_SCORE)
    stream = {
        "name": "payments", "kind": "transaction", "input_topic": src, "output_topic": out,
        "model": "fraud", "batching": {"max_batch": 16, "max_wait_ms": 5},
        "shadow": {"model": "candidate", "output_topic": side},
    }  # fmt: skip
    doc = config_doc(kafka_bootstrap, group, [stream], {"fraud": FRAUD, "candidate": candidate},
                     metrics={"enabled": True, "port": 0, "host": "127.0.0.1"})  # fmt: skip
    cfg = parse_config(doc, "t", tmp_path)
    runners = {}
    if failing:
        runners["candidate"] = FailingRunner(create_runner(candidate, max_batch=32))
    n = produce(kafka_bootstrap, src, transactions(300, seed=13, n_cards=40))
    with Pipeline(cfg, runners=runners) as pipe:
        pipe.wait_ready(60)
        wait_for(lambda: pipe.stats()["payments"].resolved >= n, 60, "all resolved")
        wait_for(lambda: sum(committed(kafka_bootstrap, group, src).values()) == n, 30,
                 "every offset committed")  # fmt: skip
        reg = pipe.metrics.registry
        shed = reg.get_sample_value("streamfer_shadow_shed_total",
                                    {"stream": "payments", "reason": "failed"})  # fmt: skip
        shadowed = reg.get_sample_value("streamfer_shadow_decisions_total",
                                        {"stream": "payments", "model": "candidate"})  # fmt: skip
        disagree = reg.get_sample_value("streamfer_shadow_disagreements_total",
                                        {"stream": "payments", "field": "action"})  # fmt: skip
        if not failing:
            wait_for(lambda: reg.get_sample_value(
                "streamfer_shadow_decisions_total", {"stream": "payments", "model": "candidate"}
            ) == n, 30, "every shadow decision")  # fmt: skip
            shadowed = n
    primary = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= n))
    assert len({(d["source"]["partition"], d["source"]["offset"]) for d in primary}) == n
    assert {d["model"]["name"] for d in primary} == {"fraud"}
    if failing:
        assert shed == n and not shadowed
        return
    assert shed is None and shadowed == n
    shadow = decisions(read_all(kafka_bootstrap, side, lambda m: len(m) >= n))
    assert {d["model"]["name"] for d in shadow} == {"candidate"}
    mine = {(d["source"]["partition"], d["source"]["offset"]): d for d in shadow}
    assert len(mine) == n
    differ = 0
    for d in primary:  # paired by source coordinates
        s = mine[(d["source"]["partition"], d["source"]["offset"])]
        assert s["source"] == d["source"] and s["result"]["fraud_score"] == NEW_SCORE
        differ += s["result"]["action"] != d["result"]["action"]
    assert differ == disagree


def test_a_polled_version_directory_is_swapped_in_without_a_signal(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out = unique_topic(3), unique_topic(1)
    versions, _ = _setup(tmp_path, kafka_bootstrap, unique_group(), src, out, "at_least_once")
    path = tmp_path / "p.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["models"]["fraud"]["poll_s"] = 0.2
    path.write_text(yaml.safe_dump(doc))
    pipe = Pipeline(load_config(path), models_source=lambda: load_config(path).models)
    with pipe:
        pipe.wait_ready(60)
        produce(kafka_bootstrap, src, transactions(60, seed=30))
        wait_for(lambda: pipe.stats()["payments"].resolved >= 60, 60, "60 resolved")
        _write_version(versions, "2", lambda p: constant_fraud_model(p, NEW_SCORE))
        wait_for(lambda: pipe.serving() == {"fraud": "2"}, 30, "version 2 polled and served")
        produce(kafka_bootstrap, src, transactions(60, seed=31))
        wait_for(lambda: pipe.stats()["payments"].resolved >= 120, 60, "120 resolved")
    got = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= 120))
    assert sorted(d["model"]["version"] for d in got) == ["1"] * 60 + ["2"] * 60
    assert [(o.result, o.version) for o in pipe.reload_outcomes()] == [("ok", "2")]

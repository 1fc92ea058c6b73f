"""Fixtures for the deploy/ checks: promtool, a populated Metrics, PromQL name parsing."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable

import click
import pytest

from streamfer.pipeline.metrics import STAGES, Metrics
from streamfer.pipeline.metrics_docs import OneGpuNvml

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
    "and", "or", "unless", "offset", "inf", "nan",
}  # fmt: skip


def populate(metrics: Metrics) -> None:
    """Move every metric the pipeline exports at least once."""
    for name, engine in (("fraud", "onnxruntime"), ("camera", "tensorrt")):
        s = metrics.stream(name, model=name, engine=engine)
        s.consumed(100)
        s.published(97)
        s.dropped("stale", 2)
        s.dead_lettered("bad_json")
        for stage in STAGES:
            s.observe_stage(stage, 0.002)
        s.observe_e2e_many([0.01, 0.03, 0.048, 0.2])
        s.observe_batch(16)
        s.set_queue_depth(5)
        s.set_lag(0, 12)
        s.set_lag_seconds(0, 1.5)
        s.set_partitions_assigned(1)
        s.state_restored(0, 1.5, 1000, "changelog")
        s.state_expired(3)
        metrics.engine_info(stream=name, model=name, engine=engine, precision="fp32",
                            device="cpu", version="1")  # fmt: skip
    metrics.set_ready_source(lambda: True)


def _populated_metrics() -> Metrics:
    metrics = Metrics(nvml_loader=lambda: OneGpuNvml())  # type: ignore[arg-type,return-value]
    populate(metrics)
    return metrics


@pytest.fixture
def populated_metrics() -> Metrics:
    """A fresh Metrics in which every metric has moved (GPU ones from a stand-in NVML)."""
    return _populated_metrics()


@pytest.fixture(scope="session")
def exported_names() -> set[str]:
    """Every sample name a populated registry exports (``_bucket``/``_sum``/... included)."""
    registry = _populated_metrics().registry
    return {sample.name for family in registry.collect() for sample in family.samples}


def promql_metric_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names an expression reads; Grafana variables ignored."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        token = match.group(0)
        if token.lower() in _KEYWORDS or re.match(r"\s*\(", text[match.end():]):
            continue  # keyword or function call
        names.add(token)
    return names


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not on PATH: run scripts/install-prometheus.sh (CI does)")
    return path


@pytest.fixture(scope="session")
def metric_names_in() -> Callable[[str], set[str]]:
    return promql_metric_names


@pytest.fixture(scope="session")
def cli_context() -> Callable[[list[str]], click.Context]:
    """Parse ``streamfer <args>`` as the image's entrypoint would, without running it."""
    from streamfer.pipeline.cli import cli

    def parse(args: list[str]) -> click.Context:
        command: click.Command = cli
        name, rest = "streamfer", list(args)
        while isinstance(command, click.Group):
            name, *rest = rest
            sub = command.get_command(click.Context(command), name)
            assert sub is not None, f"no command {name!r} in {args}"
            command = sub
        return command.make_context(name, rest)

    return parse

"""Every reference model in models/ through the ONNX Runtime runner, batch 1..max.

A model file that has not been produced yet is skipped with its path named;
once models/*.onnx exist these tests always run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tiny_onnx import REFERENCE_DIR as MODELS

from streamfer.engines.base import random_feeds
from streamfer.engines.onnxruntime.loader import SessionSettings
from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
from streamfer.errors import EngineError

# model -> (max batch tested: every size 1..max runs, input name, output name)
CONTRACT: dict[str, tuple[int, str, str]] = {
    "fraud": (64, "features", "score"),
    "sensor": (64, "window", "probs"),
    "camera": (16, "images", "output0"),
}


def _input_tail(model: str) -> tuple[int, ...]:
    if model == "fraud":
        from streamfer.models.features import FEATURE_NAMES

        return (len(FEATURE_NAMES),)
    return (100, 6) if model == "sensor" else (3, 256, 256)


def _path(model: str) -> Path:
    path = MODELS / f"{model}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not produced yet")
    return path


@pytest.fixture(params=sorted(CONTRACT), scope="module")
def reference(request: pytest.FixtureRequest) -> Iterator[tuple[str, OnnxRuntimeRunner]]:
    model = request.param
    max_batch = CONTRACT[model][0]
    runner = OnnxRuntimeRunner(_path(model), max_batch=max_batch, settings=SessionSettings())
    with runner:
        yield model, runner


def _check_output(model: str, runner: OnnxRuntimeRunner, out: np.ndarray, batch: int) -> None:
    assert out.dtype == np.float32
    assert out.shape[0] == batch
    assert np.isfinite(out).all()
    if model == "fraud":
        assert out.shape == (batch, 1)
        assert ((out >= 0) & (out <= 1)).all()
    elif model == "sensor":
        assert out.shape == (batch, 4)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-4)
    else:
        labels = json.loads(runner.metadata["streamfer.labels"])
        assert out.shape[1] == 4 + len(labels)
        assert ((out[:, 4:] >= 0) & (out[:, 4:] <= 1)).all()


def test_specs_follow_the_contract(reference: tuple[str, OnnxRuntimeRunner]) -> None:
    model, runner = reference
    _, input_name, output_name = CONTRACT[model]
    (spec,) = runner.input_specs
    assert spec.name == input_name
    assert spec.dtype == np.float32
    assert spec.shape == (None, *_input_tail(model))
    assert [o.name for o in runner.output_specs] == [output_name]
    meta = runner.metadata
    assert meta["streamfer.name"] == model
    assert meta["streamfer.task"] == {"camera": "detection"}.get(model, model)
    assert isinstance(json.loads(meta["streamfer.labels"]), list)
    assert "streamfer.version" in meta


def test_every_batch_size_up_to_max_runs_and_matches_the_full_batch(
    reference: tuple[str, OnnxRuntimeRunner],
) -> None:
    model, runner = reference
    output_name = CONTRACT[model][2]
    full_feeds = random_feeds(runner.input_specs, runner.max_batch, seed=7)
    full = runner.infer(full_feeds)[output_name]
    _check_output(model, runner, full, runner.max_batch)
    for batch in range(1, runner.max_batch):
        feeds = {name: arr[:batch] for name, arr in full_feeds.items()}
        out = runner.infer(feeds)[output_name]
        _check_output(model, runner, out, batch)
        # Rows are independent: batching must not change any sample's result.
        np.testing.assert_allclose(out, full[:batch], rtol=1e-4, atol=1e-5)


def test_over_max_and_wrong_shape_are_engine_errors(
    reference: tuple[str, OnnxRuntimeRunner],
) -> None:
    model, runner = reference
    (spec,) = runner.input_specs
    too_many = random_feeds(runner.input_specs, runner.max_batch + 1)
    with pytest.raises(EngineError, match=rf"{model} input '{spec.name}' \| batch size"):
        runner.infer(too_many)
    wrong = np.zeros((1, *(d + 1 for d in spec.shape[1:] if d is not None)), np.float32)
    with pytest.raises(
        EngineError, match=rf"{model} input '{spec.name}' \| wrong non-batch dimensions"
    ):
        runner.infer({spec.name: wrong})

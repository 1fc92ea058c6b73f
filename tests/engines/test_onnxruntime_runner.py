"""The ONNX Runtime runner on tiny models: results, lifecycle, feed validation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_onnx import mlp_reference

from streamfer.engines.base import TensorSpec
from streamfer.engines.onnxruntime.loader import SessionSettings
from streamfer.engines.onnxruntime.runner import OnnxRuntimeRunner
from streamfer.errors import EngineError


def test_specs_and_metadata_are_read_from_the_onnx_file(mlp_onnx: Path) -> None:
    runner = OnnxRuntimeRunner(mlp_onnx, max_batch=8)
    assert runner.input_specs == (TensorSpec("features", np.dtype("float32"), (None, 4)),)
    assert runner.output_specs == (TensorSpec("score", np.dtype("float32"), (None, 3)),)
    assert runner.metadata["streamfer.name"] == "mlp"
    assert runner.max_batch == 8
    assert runner.name == "mlp"
    assert not runner.is_active


def test_infer_matches_numpy_at_every_batch_size(mlp_onnx: Path) -> None:
    rng = np.random.default_rng(1)
    with OnnxRuntimeRunner(mlp_onnx, max_batch=16) as runner:
        for n in range(1, 17):
            x = rng.standard_normal((n, 4), dtype=np.float32)
            out = runner.infer({"features": x})
            assert set(out) == {"score"}
            assert out["score"].shape == (n, 3)
            np.testing.assert_allclose(out["score"], mlp_reference(x), rtol=1e-5, atol=1e-6)


def test_two_inputs_of_different_dtypes(two_input_onnx: Path) -> None:
    a = np.ones((3, 2, 3), dtype=np.float32)
    b = np.array([[1], [2], [3]], dtype=np.int64)
    with OnnxRuntimeRunner(two_input_onnx, max_batch=4) as runner:
        out = runner.infer({"a": a, "b": b})["out"]
    np.testing.assert_array_equal(out[:, 0, 0], [2.0, 3.0, 4.0])


def test_lifecycle_is_lazy_and_idempotent(mlp_onnx: Path) -> None:
    runner = OnnxRuntimeRunner(mlp_onnx, max_batch=2)
    with pytest.raises(EngineError, match=r"mlp \| infer\(\) called on an inactive runner"):
        runner.infer({"features": np.zeros((1, 4), np.float32)})
    runner.activate()
    runner.activate()
    assert runner.is_active
    runner.deactivate()
    runner.deactivate()
    with pytest.raises(EngineError, match="inactive"):
        runner.infer({"features": np.zeros((1, 4), np.float32)})


def test_info_reports_the_providers_the_session_uses(mlp_onnx: Path) -> None:
    runner = OnnxRuntimeRunner(mlp_onnx, settings=SessionSettings(intra_op_threads=1))
    with runner:
        info = runner.info
    assert info.kind == "onnxruntime"
    assert info.precision == "fp32"
    assert info.providers == ("CPUExecutionProvider",)
    assert info.device == "cpu"


def test_unknown_provider_is_refused_on_activate(mlp_onnx: Path) -> None:
    runner = OnnxRuntimeRunner(mlp_onnx, settings=SessionSettings(providers=("NopeProvider",)))
    with pytest.raises(EngineError, match=r"\['NopeProvider'\] not available"):
        runner.activate()
    assert not runner.is_active


def test_bad_thread_setting_is_refused() -> None:
    with pytest.raises(EngineError, match=r"intra_op_threads \| 0 is invalid"):
        SessionSettings(intra_op_threads=0)


def test_concurrent_infer_from_several_threads(mlp_onnx: Path) -> None:
    errors: list[BaseException] = []
    with OnnxRuntimeRunner(mlp_onnx, max_batch=4) as runner:

        def work(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(50):
                    x = rng.standard_normal((4, 4), dtype=np.float32)
                    got = runner.infer({"features": x})["score"]
                    np.testing.assert_allclose(got, mlp_reference(x), rtol=1e-5, atol=1e-6)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert errors == []


# -- feed validation: every message names the tensor, what came and what was expected --


@pytest.fixture
def active(mlp_onnx: Path) -> OnnxRuntimeRunner:
    runner = OnnxRuntimeRunner(mlp_onnx, max_batch=8)
    runner.activate()
    return runner


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        (
            np.zeros((2, 4), np.float64),
            r"mlp input 'features' \| wrong dtype float64: got float64 \[2, 4\]\. "
            r"Note: expected float32 \[N, 4\] with 1 <= N <= 8",
        ),
        (
            np.zeros((2, 4, 1), np.float32),
            r"input 'features' \| wrong rank 3: got float32 \[2, 4, 1\]",
        ),
        (
            np.zeros((2, 5), np.float32),
            r"input 'features' \| wrong non-batch dimensions: got float32 \[2, 5\]",
        ),
        (
            np.zeros((9, 4), np.float32),
            r"input 'features' \| batch size 9 is out of range: got float32 \[9, 4\]\. "
            r"Note: expected float32 \[N, 4\] with 1 <= N <= 8",
        ),
        (
            np.zeros((0, 4), np.float32),
            r"input 'features' \| batch size 0 is out of range",
        ),
        (
            [[0.0, 0.0, 0.0, 0.0]],
            r"input 'features' \| not a numpy array: got a list\. Note: expected float32",
        ),
    ],
    ids=["dtype", "rank", "non-batch-dim", "over-max", "empty", "not-array"],
)
def test_bad_feeds_raise_engine_errors(
    active: OnnxRuntimeRunner, feed: object, message: str
) -> None:
    with pytest.raises(EngineError, match=message):
        active.infer({"features": feed})  # type: ignore[dict-item]


def test_missing_and_unknown_inputs_are_named(active: OnnxRuntimeRunner) -> None:
    with pytest.raises(
        EngineError,
        match=r"mlp feeds \| missing input 'features'; unknown input 'feature' "
        r"\(got \['feature'\]\)\. Note: expected exactly 'features' float32 \[N, 4\]",
    ):
        active.infer({"feature": np.zeros((1, 4), np.float32)})
    with pytest.raises(EngineError, match=r"unknown input 'extra'"):
        active.infer({"features": np.zeros((1, 4), np.float32), "extra": np.zeros(1, np.float32)})


def test_inputs_must_share_one_batch_size(two_input_onnx: Path) -> None:
    with (
        OnnxRuntimeRunner(two_input_onnx, max_batch=4) as runner,
        pytest.raises(EngineError, match=r"input 'b' \| batch size 2 differs from the other"),
    ):
        runner.infer({"a": np.zeros((3, 2, 3), np.float32), "b": np.zeros((2, 1), np.int64)})


def test_dynamic_non_batch_axis_accepts_any_size(make_identity_onnx: Callable[..., Path]) -> None:
    path = make_identity_onnx(["N", "T", 2])
    with OnnxRuntimeRunner(path, max_batch=2) as runner:
        assert runner.input_specs[0].shape == (None, None, 2)
        out = runner.infer({"x": np.ones((2, 7, 2), np.float32)})["y"]
        assert out.shape == (2, 7, 2)
        with pytest.raises(
            EngineError, match=r"got float32 \[2, 7, 3\]\. Note: expected float32 \[N, \?, 2\]"
        ):
            runner.infer({"x": np.ones((2, 7, 3), np.float32)})


def test_fixed_batch_axis_is_refused_with_the_reason(
    make_identity_onnx: Callable[..., Path],
) -> None:
    path = make_identity_onnx([1, 4])
    runner = OnnxRuntimeRunner(path)
    with pytest.raises(EngineError, match=r"input 'x' \| batch axis is fixed at 1"):
        runner.activate()


def test_missing_and_non_onnx_files_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(EngineError, match=rf"{missing} \| no such file\. Note: expected an ONNX"):
        OnnxRuntimeRunner(missing).activate()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 10)
    with pytest.raises(EngineError, match=rf"{junk} \| "):
        OnnxRuntimeRunner(junk).activate()

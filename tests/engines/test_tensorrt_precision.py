"""FP16/INT8 preparation: clear errors when a precision cannot be produced.

Converters are replaced by small fakes only to reach the checks that guard
against mislabelled graphs; no real FP16 or INT8 graph is claimed here.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest

from streamfer.engines.onnx_model import read_onnx_info
from streamfer.engines.tensorrt.precision import (
    count_fp16_tensors,
    load_calibration,
    precision_recipe,
    prepare_onnx,
)
from streamfer.errors import EngineError

NO_CONVERTERS = (
    "modelopt",
    "modelopt.onnx",
    "modelopt.onnx.autocast",
    "modelopt.onnx.quantization",
    "onnxconverter_common",
    "onnxconverter_common.float16",
)


@pytest.fixture
def no_converters(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NO_CONVERTERS:
        monkeypatch.setitem(sys.modules, name, None)


def _fake_float16(monkeypatch: pytest.MonkeyPatch, convert: object) -> None:
    module = types.ModuleType("onnxconverter_common.float16")
    module.convert_float_to_float16 = convert  # type: ignore[attr-defined]
    monkeypatch.setitem(
        sys.modules, "onnxconverter_common", types.ModuleType("onnxconverter_common")
    )
    monkeypatch.setitem(sys.modules, "onnxconverter_common.float16", module)


def test_fp32_uses_the_graph_as_is(mlp_onnx: Path, tmp_path: Path) -> None:
    assert precision_recipe("fp32") == ""
    assert prepare_onnx(mlp_onnx, "fp32", tmp_path, None) == mlp_onnx


def test_fp16_without_a_converter_fails_clearly(
    no_converters: None, mlp_onnx: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        EngineError, match=r"precision fp16 \| no ONNX FP16 converter.*nvidia-modelopt"
    ):
        prepare_onnx(mlp_onnx, "fp16", tmp_path, None)
    assert list(tmp_path.glob("*.fp16.onnx")) == []


def test_int8_without_modelopt_fails_clearly(
    no_converters: None, mlp_onnx: Path, tmp_path: Path
) -> None:
    calib = {"features": np.zeros((8, 4), np.float32)}
    with pytest.raises(EngineError, match=r"precision int8 \| modelopt.onnx.quantization is not"):
        prepare_onnx(mlp_onnx, "int8", tmp_path, calib)


def test_int8_without_calibration_samples_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    quantization = types.ModuleType("modelopt.onnx.quantization")
    for name in ("modelopt", "modelopt.onnx"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", quantization)
    with pytest.raises(EngineError, match=r"precision int8 \| no calibration samples given"):
        precision_recipe("int8", None)
    calib = {"features": np.ones((2, 4), np.float32)}
    other = {"features": np.zeros((2, 4), np.float32)}
    assert precision_recipe("int8", calib) != precision_recipe("int8", other)


def test_a_converter_that_leaves_fp32_is_refused(
    no_converters: None, monkeypatch: pytest.MonkeyPatch, mlp_onnx: Path, tmp_path: Path
) -> None:
    _fake_float16(monkeypatch, lambda model, keep_io_types: model)
    with pytest.raises(EngineError, match="produced no FP16 tensors"):
        prepare_onnx(mlp_onnx, "fp16", tmp_path, None)


def test_a_converter_that_changes_io_types_is_refused(
    no_converters: None, monkeypatch: pytest.MonkeyPatch, mlp_onnx: Path, tmp_path: Path
) -> None:
    def to_half_everywhere(model: onnx.ModelProto, keep_io_types: bool) -> onnx.ModelProto:
        for init in model.graph.initializer:
            init.data_type = onnx.TensorProto.FLOAT16
        model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
        return model

    _fake_float16(monkeypatch, to_half_everywhere)
    with pytest.raises(EngineError, match=r"changed its inputs/outputs.*keep_io_types"):
        prepare_onnx(mlp_onnx, "fp16", tmp_path, None)


def test_count_fp16_tensors_sees_casts(mlp_onnx: Path) -> None:
    model = onnx.load(str(mlp_onnx))
    assert count_fp16_tensors(model) == 0
    model.graph.node.append(
        onnx.helper.make_node("Cast", ["score"], ["half"], to=onnx.TensorProto.FLOAT16)
    )
    assert count_fp16_tensors(model) == 1


def test_calibration_file_is_checked_against_the_inputs(mlp_onnx: Path, tmp_path: Path) -> None:
    inputs = read_onnx_info(mlp_onnx).inputs
    good = tmp_path / "good.npz"
    np.savez(good, features=np.ones((16, 4), np.float32))
    assert load_calibration(good, inputs)["features"].shape == (16, 4)
    wrong_name = tmp_path / "name.npz"
    np.savez(wrong_name, x=np.ones((16, 4), np.float32))
    with pytest.raises(EngineError, match=r"calibration arrays \['x'\].*expected exactly"):
        load_calibration(wrong_name, inputs)
    wrong_dtype = tmp_path / "dtype.npz"
    np.savez(wrong_dtype, features=np.ones((16, 4), np.float64))
    with pytest.raises(EngineError, match=r"calibration 'features' \| got float64 \[16, 4\]"):
        load_calibration(wrong_dtype, inputs)
    with pytest.raises(EngineError, match=r"calibration file unreadable"):
        load_calibration(tmp_path / "missing.npz", inputs)


def test_real_fp16_conversion_keeps_io_and_outputs(mlp_onnx: Path, tmp_path: Path) -> None:
    """onnxconverter-common (dev/gpu extra) casts the graph; ONNX Runtime checks the result."""
    pytest.importorskip("onnxconverter_common.float16")
    import onnxruntime as ort

    if precision_recipe("fp16").startswith("modelopt"):
        pytest.skip("ModelOpt AutoCast is installed and takes precedence")
    assert precision_recipe("fp16").startswith("onnxconverter-common ")
    half = prepare_onnx(mlp_onnx, "fp16", tmp_path, None)
    assert half == tmp_path / "mlp.fp16.onnx"
    model = onnx.load(str(half))
    assert count_fp16_tensors(model) > 0
    assert read_onnx_info(half).inputs == read_onnx_info(mlp_onnx).inputs
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    want = ort.InferenceSession(str(mlp_onnx)).run(None, {"features": x})[0]
    got = ort.InferenceSession(str(half)).run(None, {"features": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=5e-3)

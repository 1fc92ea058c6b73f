"""Builder and cache logic around TensorRT, exercised with a recording fake module.

Nothing here builds or runs an engine (see fake_tensorrt.py); the real build is
covered by test_tensorrt_gpu.py where TensorRT and a GPU exist.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_tensorrt import FakeLayer, FakeTensor, Script, make_fake_tensorrt

import streamfer.engines.tensorrt.builder as builder_mod
from streamfer.engines.onnx_model import read_onnx_info
from streamfer.engines.tensorrt.builder import (
    BuildSettings,
    EngineFromOnnx,
    build_serialized_engine,
)
from streamfer.engines.tensorrt.cache import BatchProfile
from streamfer.errors import EngineError


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    """Install a fake ``tensorrt`` and a fixed compute capability for one test."""
    s = Script()
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(s))
    monkeypatch.setattr(builder_mod, "compute_capability", lambda device=0: "9.0")
    return s


def _build(script: Script, onnx_path: Path, tmp_path: Path, **settings: object) -> bytes:
    trt = sys.modules["tensorrt"]
    return build_serialized_engine(
        trt,
        onnx_path,
        read_onnx_info(onnx_path),
        BuildSettings(**settings),  # type: ignore[arg-type]
        tmp_path / "t.timing",
    )


def test_the_build_gets_the_parsed_file_the_profile_the_workspace_and_the_timing_cache(
    script: Script, mlp_onnx: Path, tmp_path: Path
) -> None:
    """The build contract, asserted on what the builder was handed."""
    _build(script, mlp_onnx, tmp_path, profile=BatchProfile(1, 8, 32), workspace_bytes=1 << 28)
    assert script.parsed == [str(mlp_onnx)]
    (built,) = script.built
    assert built.network.parsed_from == str(mlp_onnx)
    assert built.network.flags == 0  # strongly typed: TensorRT 11's only kind
    (profile,) = built.config.profiles
    assert profile.shapes == {"features": ((1, 4), (8, 4), (32, 4))}
    assert built.config.workspace == 1 << 28
    assert built.config.timing_cache is not None
    assert built.config.timing_cache.data == b""


def test_the_profile_gives_every_input_of_a_two_input_model_its_shapes(
    script: Script, two_input_onnx: Path, tmp_path: Path
) -> None:
    """Each input gets the batch range on its first axis and its own fixed axes; the fake
    TensorRT, like TensorRT, returns no engine when an input lacks profile shapes."""
    engine = _build(script, two_input_onnx, tmp_path, profile=BatchProfile(1, 4, 16))
    assert engine == script.engine and script.build_errors == []
    (built,) = script.built
    assert [i.name for i in built.network.inputs] == ["a", "b"]
    (profile,) = built.config.profiles
    assert profile.shapes == {
        "a": ((1, 2, 3), (4, 2, 3), (16, 2, 3)),
        "b": ((1, 1), (4, 1), (16, 1)),
    }


def test_the_fake_tensorrt_refuses_a_profile_missing_an_input(
    script: Script, two_input_onnx: Path, tmp_path: Path
) -> None:
    """The double checks what it is given: shapes for the first input only build nothing."""
    trt = sys.modules["tensorrt"]
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(two_input_onnx))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("a", (1, 2, 3), (4, 2, 3), (16, 2, 3))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is None
    assert script.build_errors == ["optimization profile is missing values for input 'b'"]


def test_timing_cache_is_persisted_and_reused(
    script: Script, mlp_onnx: Path, tmp_path: Path
) -> None:
    _build(script, mlp_onnx, tmp_path)
    assert (tmp_path / "t.timing").read_bytes() == b"+timing"
    _build(script, mlp_onnx, tmp_path)
    cache = script.built[1].config.timing_cache
    assert cache is not None and cache.data == b"+timing"


def test_parse_errors_carry_the_parser_messages(
    script: Script, mlp_onnx: Path, tmp_path: Path
) -> None:
    script.parse_errors = ["node 3 (Foo): unsupported operator", "In node 7: bad input"]
    with pytest.raises(
        EngineError,
        match=r"TensorRT's ONNX parser failed \(2 errors\): node 3 \(Foo\): unsupported "
        r"operator; In node 7: bad input",
    ):
        _build(script, mlp_onnx, tmp_path)
    assert script.parsed == [str(mlp_onnx)]
    assert script.builds == 0


def test_failed_build_is_an_error_and_writes_no_timing_cache(
    script: Script, mlp_onnx: Path, tmp_path: Path
) -> None:
    script.engine = None
    with pytest.raises(EngineError, match=r"TensorRT could not build the engine \(precision fp32"):
        _build(script, mlp_onnx, tmp_path)
    assert not (tmp_path / "t.timing").exists()


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_network_without_the_precision_is_refused(
    script: Script, mlp_onnx: Path, tmp_path: Path, precision: str
) -> None:
    """An all-FP32 network is never built under an fp16/int8 label."""
    with pytest.raises(EngineError, match=rf"no {precision} layers.*refusing to build FP32"):
        _build(script, mlp_onnx, tmp_path, precision=precision)
    assert script.builds == 0


def test_half_and_quantize_layers_satisfy_the_check(
    script: Script, mlp_onnx: Path, tmp_path: Path
) -> None:
    script.layers = [FakeLayer(outputs=[FakeTensor("HALF")])]
    _build(script, mlp_onnx, tmp_path, precision="fp16")
    script.layers = [FakeLayer(type="QUANTIZE")]
    _build(script, mlp_onnx, tmp_path, precision="int8")
    assert script.builds == 2


# -- EngineFromOnnx: the cache in front of the builder ------------------------------


def test_second_load_comes_from_the_cache(script: Script, mlp_onnx: Path, tmp_path: Path) -> None:
    load = EngineFromOnnx(mlp_onnx, BuildSettings(), cache_dir=tmp_path)
    first = load()
    assert not first.from_cache
    assert first.path.exists()
    assert first.key.compute_capability == "9.0"
    assert first.key.tensorrt_version == "11.4.0"
    second = load()
    assert second.from_cache
    assert second.data == first.data
    assert script.builds == 1
    assert load(force=True).from_cache is False
    assert script.builds == 2


def test_a_changed_onnx_or_tensorrt_version_rebuilds(
    script: Script, mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = EngineFromOnnx(mlp_onnx, BuildSettings(), cache_dir=tmp_path)
    first = load()
    model = onnx.load(str(mlp_onnx))
    model.doc_string = "retrained"
    onnx.save(model, str(mlp_onnx))
    assert load().key.onnx_sha256 != first.key.onnx_sha256
    assert script.builds == 2
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(script, version="11.5.0"))
    assert not load().from_cache
    assert script.builds == 3


def test_a_corrupted_cached_engine_is_rebuilt(
    script: Script, mlp_onnx: Path, tmp_path: Path
) -> None:
    load = EngineFromOnnx(mlp_onnx, BuildSettings(), cache_dir=tmp_path)
    first = load()
    first.path.write_bytes(b"garbage")
    again = load()
    assert not again.from_cache
    assert again.path.read_bytes() == first.data
    assert script.builds == 2


def test_missing_tensorrt_says_how_to_get_it(
    mlp_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EngineError, match=r"tensorrt \| not importable.*streamfer\[gpu\]"):
        EngineFromOnnx(mlp_onnx, cache_dir=tmp_path)()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(EngineError, match=r"precision \| 'fp8' is unknown"):
        BuildSettings(precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(EngineError, match=r"workspace \| 1024 bytes is too small"):
        BuildSettings(workspace_bytes=1024)
    assert BuildSettings(calibration={"x": np.zeros((1, 4), np.float32)}).precision == "fp32"

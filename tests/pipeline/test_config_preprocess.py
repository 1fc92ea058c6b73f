"""The ``preprocess`` section of a camera stream: where frames are decoded and letterboxed."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import base, write

from streamfer.engines.gpu import gpu_libraries_missing, resolve_preprocess_device
from streamfer.errors import ConfigError, EngineError
from streamfer.pipeline.config import load_config


def camera(**extra: object) -> dict:
    return base(kind="camera", input_topic="camera.frames", output_topic="camera.out", **extra)


def test_auto_is_the_default(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, camera())).streams[0].preprocess.device == "auto"
    cfg = load_config(write(tmp_path, camera(preprocess={"device": "gpu"})))
    assert cfg.streams[0].preprocess.device == "gpu"


def test_unknown_devices_and_other_kinds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"streams\[0\]\.preprocess\.device.*'tpu'.*auto"):
        load_config(write(tmp_path, camera(preprocess={"device": "tpu"})))
    with pytest.raises(ConfigError, match=r"streams\[0\]\.preprocess \| applies to camera"):
        load_config(write(tmp_path, base(preprocess={"device": "cpu"})))


def test_gpu_needs_an_engine_that_reads_device_memory(tmp_path: Path) -> None:
    doc = camera(preprocess={"device": "gpu"})
    doc["models"]["fraud"]["target"] = "onnxruntime"
    with pytest.raises(ConfigError, match=r"preprocess\.device \| the GPU batch stays in device"):
        load_config(write(tmp_path, doc))


def test_resolution_at_start() -> None:
    assert resolve_preprocess_device("cpu", "tensorrt") == "cpu"
    assert resolve_preprocess_device("auto", "onnxruntime") == "cpu"
    with pytest.raises(EngineError, match=r"gpu with engine onnxruntime"):
        resolve_preprocess_device("gpu", "onnxruntime")
    if gpu_libraries_missing():  # this machine: gpu is refused, auto falls back to the CPU
        assert resolve_preprocess_device("auto", "tensorrt") == "cpu"
        with pytest.raises(EngineError, match=r"gpu but .* not installed"):
            resolve_preprocess_device("gpu", "tensorrt")

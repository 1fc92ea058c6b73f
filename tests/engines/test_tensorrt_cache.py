"""Engine cache keys, profiles and stale/foreign detection (no TensorRT needed)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from streamfer.engines.base import TensorSpec
from streamfer.engines.tensorrt.cache import BatchProfile, EngineCache, EngineKey
from streamfer.errors import EngineError

KEY = EngineKey(
    onnx_sha256="ab" * 32,
    tensorrt_version="11.4.0",
    compute_capability="9.0",
    precision="fp16",
    recipe="modelopt-autocast 0.47.0",
    profile=BatchProfile(1, 32, 64),
)


def test_profile_shapes_put_the_batch_first() -> None:
    spec = TensorSpec("window", np.dtype("float32"), (None, 100, 6))
    assert BatchProfile(1, 8, 64).shapes(spec) == ((1, 100, 6), (8, 100, 6), (64, 100, 6))
    assert BatchProfile.for_max(16) == BatchProfile(1, 16, 16)
    assert BatchProfile.for_max(16, opt=4) == BatchProfile(1, 4, 16)


@pytest.mark.parametrize(("lo", "opt", "hi"), [(0, 1, 1), (2, 1, 4), (1, 8, 4)])
def test_profile_order_is_enforced(lo: int, opt: int, hi: int) -> None:
    with pytest.raises(EngineError, match=r"batch profile \| .* Note: expected 1 <= min <= opt"):
        BatchProfile(lo, opt, hi)


def test_profile_refuses_dynamic_non_batch_axes() -> None:
    spec = TensorSpec("x", np.dtype("float32"), (None, None, 3))
    with pytest.raises(EngineError, match=r"input 'x' \| non-batch axes are dynamic"):
        BatchProfile(1, 1, 4).shapes(spec)


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"tensorrt_version": "11.5.0"},
        {"compute_capability": "8.9"},
        {"precision": "fp32", "recipe": ""},
        {"recipe": "onnxconverter-common 1.16.0"},
        {"profile": BatchProfile(1, 64, 64)},
    ],
)
def test_every_key_field_changes_the_digest(change: dict[str, object]) -> None:
    other = dataclasses.replace(KEY, **change)  # type: ignore[arg-type]
    assert other.digest != KEY.digest
    assert dataclasses.replace(KEY).digest == KEY.digest


def test_store_then_load_round_trips(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load(KEY, "fraud") is None
    path = cache.store(KEY, "fraud", b"serialized-engine-bytes", {"onnx_path": "/m/fraud.onnx"})
    assert path == cache.engine_path(KEY, "fraud")
    assert path.name.startswith("fraud-fp16-")
    assert cache.load(KEY, "fraud") == b"serialized-engine-bytes"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["key"]["compute_capability"] == "9.0"
    assert meta["onnx_path"] == "/m/fraud.onnx"
    assert [e.engine_path for e in cache.entries(KEY.onnx_sha256)] == [path]
    assert cache.entries("00" * 32) == []


def test_a_foreign_engine_is_not_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An entry copied under another key's name (other GPU) is refused by its sidecar."""
    cache = EngineCache(tmp_path)
    foreign_key = dataclasses.replace(KEY, compute_capability="8.6")
    foreign = cache.store(foreign_key, "fraud", b"engine-for-sm86", {})
    mine = cache.engine_path(KEY, "fraud")
    foreign.rename(mine)
    foreign.with_suffix(".json").rename(mine.with_suffix(".json"))
    with caplog.at_level(logging.WARNING):
        assert cache.load(KEY, "fraud") is None
    assert "built for another key" in caplog.text


def test_a_stale_or_unverifiable_engine_is_not_loaded(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, "fraud", b"good-engine", {})
    path.write_bytes(b"truncated")
    assert cache.load(KEY, "fraud") is None
    cache.store(KEY, "fraud", b"good-engine", {})
    path.with_suffix(".json").unlink()
    assert cache.load(KEY, "fraud") is None
    path.with_suffix(".json").write_text("{not json")
    assert cache.load(KEY, "fraud") is None


def test_invalidate_removes_engine_and_sidecar(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, "fraud", b"x", {})
    cache.invalidate(path)
    assert not path.exists()
    assert not path.with_suffix(".json").exists()


def test_timing_cache_is_per_version_and_architecture(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    a = cache.timing_cache_path("11.4.0", "9.0")
    assert a != cache.timing_cache_path("11.4.0", "8.9")
    assert a != cache.timing_cache_path("11.5.0", "9.0")

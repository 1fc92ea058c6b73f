"""The letterbox kernel compiles with NVRTC (no GPU or driver needed) and its cache works."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings not installed (extra `dev`)")

from streamfer.engines.gpu import kernels
from streamfer.errors import EngineError
from streamfer.models.preprocess import PAD_VALUE


@pytest.mark.parametrize("arch", ["sm_75", "sm_80", "sm_86", "sm_89", "sm_90"])
def test_the_kernel_compiles_for_every_architecture_we_run_on(arch: str) -> None:
    cubin = kernels.compile_cubin(arch)
    assert cubin[:4] == b"\x7fELF"
    for name in kernels.KERNELS.values():
        assert name.encode() in cubin


def test_the_descriptor_layout_and_pad_level_are_the_sources() -> None:
    """The source static_asserts sizeof(FrameDesc) == 56; numpy's layout must agree."""
    assert kernels.FRAME_DESC.itemsize == 56
    assert kernels.FRAME_DESC.fields["sx"][1] == 48
    assert f"#define PAD_LEVEL {PAD_VALUE}.0f" in kernels.SOURCE
    assert set(kernels.KERNELS) == {np.dtype(np.float32), np.dtype(np.float16)}


def test_a_compile_error_carries_nvrtc_s_log() -> None:
    with pytest.raises(EngineError, match=r"letterbox kernel \| NVRTC could not compile.*error"):
        kernels.compile_cubin("sm_90", kernels.SOURCE + "\nthis is not C++;\n")


def test_the_cubin_is_compiled_once_then_read_from_the_cache(tmp_path: Path) -> None:
    first = kernels.letterbox_cubin("sm_80", tmp_path)
    (cached,) = (tmp_path / "kernels").glob("letterbox-sm_80-*.cubin")
    assert cached.read_bytes() == first
    kernels.letterbox_cubin.cache_clear()
    cached.write_bytes(b"\x7fELF from the cache")
    assert kernels.letterbox_cubin("sm_80", tmp_path) == b"\x7fELF from the cache"
    kernels.letterbox_cubin.cache_clear()


@pytest.mark.parametrize(("cc", "arch"), [("9.0", "sm_90"), ("8.6", "sm_86")])
def test_arch_of(cc: str, arch: str) -> None:
    assert kernels.arch_of(cc) == arch
    with pytest.raises(EngineError, match="malformed"):
        kernels.arch_of("nine")

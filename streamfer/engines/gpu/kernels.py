"""The letterbox kernel's CUDA source and its NVRTC compilation.

One launch per batch: ``grid.z`` is the frame, each thread writes one output
pixel's three channels into NCHW. Each frame is described by a ``FrameDesc``
(table uploaded with the batch), so frames of different sizes, pitches and
channel orders share the launch. The resampling is what the CPU path does
with OpenCV: exact area averaging when the frame shrinks (``INTER_AREA``),
bilinear with half-pixel centres when it grows (``INTER_LINEAR``); each value
is rounded to an 8-bit level before the 1/255 scaling, as the CPU path's
uint8 intermediate is, so both paths feed the model the same numbers.

NVRTC (``cuda-bindings`` + ``nvidia-cuda-nvrtc``) compiles without a GPU or
driver, so CI compiles the source for the architectures we ship on; at run
time the cubin for the device is compiled once per process and kept on disk
under the engine cache, keyed by source, architecture and NVRTC version.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from streamfer.engines.host import atomic_write, import_optional, resolve_cache_dir
from streamfer.errors import EngineError
from streamfer.models.preprocess import PAD_VALUE

log = logging.getLogger(__name__)

BLOCK = (32, 8, 1)  # 32 consecutive x per warp: coalesced NCHW stores
KERNELS: dict[np.dtype[Any], str] = {
    np.dtype(np.float32): "letterbox_f32",
    np.dtype(np.float16): "letterbox_f16",
}

# One row per frame; the layout must match ``struct FrameDesc`` below (56 bytes).
FRAME_DESC = np.dtype(
    [
        ("src", np.uint64),  # device address of pixel (0, 0), HWC uint8
        ("pitch", np.int32),  # bytes from one source row to the next
        ("width", np.int32),
        ("height", np.int32),
        ("channels", np.int32),  # 1 (gray) or 3
        ("bgr", np.int32),  # 1: BGR order (raw and PNG frames), 0: RGB (nvImageCodec)
        ("area", np.int32),  # 1: shrink by area averaging, 0: bilinear
        ("new_w", np.int32),  # resized size inside the square
        ("new_h", np.int32),
        ("pad_x", np.int32),
        ("pad_y", np.int32),
        ("sx", np.float32),  # source pixels per output pixel: width / new_w
        ("sy", np.float32),  # height / new_h
    ],
    align=True,
)

_TEMPLATE = r"""
struct FrameDesc {
    unsigned long long src;
    int pitch, width, height, channels, bgr, area;
    int new_w, new_h, pad_x, pad_y;
    float sx, sy;
};
static_assert(sizeof(FrameDesc) == 56, "FrameDesc must match engines.gpu.kernels.FRAME_DESC");

#define PAD_LEVEL @PAD_LEVEL@

__device__ __forceinline__ void load_rgb(const unsigned char* row, int x, const FrameDesc& d,
                                         float* rgb) {
    const unsigned char* p = row + (long long)x * d.channels;
    if (d.channels == 1) {
        rgb[0] = rgb[1] = rgb[2] = p[0];
    } else if (d.bgr) {
        rgb[0] = p[2]; rgb[1] = p[1]; rgb[2] = p[0];
    } else {
        rgb[0] = p[0]; rgb[1] = p[1]; rgb[2] = p[2];
    }
}

// Exact area average of the source box [x*sx, (x+1)*sx) x [y*sy, (y+1)*sy).
__device__ void sample_area(const FrameDesc& d, int x, int y, float* out) {
    float fx0 = x * d.sx, fx1 = fminf(fx0 + d.sx, (float)d.width);
    float fy0 = y * d.sy, fy1 = fminf(fy0 + d.sy, (float)d.height);
    int x0 = (int)floorf(fx0), x1 = min((int)ceilf(fx1), d.width);
    int y0 = (int)floorf(fy0), y1 = min((int)ceilf(fy1), d.height);
    float acc[3] = {0.f, 0.f, 0.f};
    float total = 0.f;
    const unsigned char* base = (const unsigned char*)d.src;
    for (int sy = y0; sy < y1; ++sy) {
        float wy = fminf(sy + 1.f, fy1) - fmaxf((float)sy, fy0);
        const unsigned char* row = base + (long long)sy * d.pitch;
        for (int sx = x0; sx < x1; ++sx) {
            float w = wy * (fminf(sx + 1.f, fx1) - fmaxf((float)sx, fx0));
            float rgb[3];
            load_rgb(row, sx, d, rgb);
            acc[0] += w * rgb[0]; acc[1] += w * rgb[1]; acc[2] += w * rgb[2];
            total += w;
        }
    }
    float inv = 1.f / total;
    out[0] = acc[0] * inv; out[1] = acc[1] * inv; out[2] = acc[2] * inv;
}

// Bilinear with half-pixel centres, edges clamped (OpenCV's INTER_LINEAR).
__device__ void sample_linear(const FrameDesc& d, int x, int y, float* out) {
    float fx = (x + 0.5f) * d.sx - 0.5f, fy = (y + 0.5f) * d.sy - 0.5f;
    int ix = (int)floorf(fx), iy = (int)floorf(fy);
    float ax = fx - ix, ay = fy - iy;
    if (ix < 0) { ix = 0; ax = 0.f; }
    if (iy < 0) { iy = 0; ay = 0.f; }
    if (ix >= d.width - 1) { ix = d.width - 1; ax = 0.f; }
    if (iy >= d.height - 1) { iy = d.height - 1; ay = 0.f; }
    int ix1 = min(ix + 1, d.width - 1), iy1 = min(iy + 1, d.height - 1);
    const unsigned char* base = (const unsigned char*)d.src;
    const unsigned char* r0 = base + (long long)iy * d.pitch;
    const unsigned char* r1 = base + (long long)iy1 * d.pitch;
    float a[3], b[3], c[3], e[3];
    load_rgb(r0, ix, d, a); load_rgb(r0, ix1, d, b);
    load_rgb(r1, ix, d, c); load_rgb(r1, ix1, d, e);
    for (int k = 0; k < 3; ++k) {
        float top = a[k] + ax * (b[k] - a[k]);
        float bottom = c[k] + ax * (e[k] - c[k]);
        out[k] = top + ay * (bottom - top);
    }
}

// The RGB levels (0..255, rounded as a uint8 image would hold them) of output pixel (x, y).
__device__ __forceinline__ bool letterbox_pixel(const FrameDesc& d, int x, int y, float* rgb) {
    int ix = x - d.pad_x, iy = y - d.pad_y;
    if (ix < 0 || iy < 0 || ix >= d.new_w || iy >= d.new_h) {
        rgb[0] = rgb[1] = rgb[2] = PAD_LEVEL;
        return false;
    }
    if (d.area) sample_area(d, ix, iy, rgb); else sample_linear(d, ix, iy, rgb);
    for (int k = 0; k < 3; ++k) rgb[k] = fminf(fmaxf(rintf(rgb[k]), 0.f), 255.f);
    return true;
}

__device__ __forceinline__ unsigned short to_half(float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

extern "C" __global__ void letterbox_f32(const FrameDesc* frames, float* out, int size) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= size || y >= size) return;
    float rgb[3];
    letterbox_pixel(frames[blockIdx.z], x, y, rgb);
    long long plane = (long long)size * size;
    float* dst = out + blockIdx.z * 3 * plane + (long long)y * size + x;
    for (int k = 0; k < 3; ++k) dst[k * plane] = rgb[k] * (1.f / 255.f);
}

extern "C" __global__ void letterbox_f16(const FrameDesc* frames, unsigned short* out, int size) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= size || y >= size) return;
    float rgb[3];
    letterbox_pixel(frames[blockIdx.z], x, y, rgb);
    long long plane = (long long)size * size;
    unsigned short* dst = out + blockIdx.z * 3 * plane + (long long)y * size + x;
    for (int k = 0; k < 3; ++k) dst[k * plane] = to_half(rgb[k] * (1.f / 255.f));
}
"""
SOURCE = _TEMPLATE.replace("@PAD_LEVEL@", f"{PAD_VALUE}.0f")


def arch_of(compute_capability: str) -> str:
    """``"9.0"`` -> ``"sm_90"``."""
    major, _, minor = compute_capability.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        raise EngineError(
            f"compute capability | {compute_capability!r} is malformed. Note: expected 'X.Y'"
        )
    return f"sm_{major}{minor}"


def _nvrtc() -> Any:
    return import_optional(
        "cuda.bindings.nvrtc", "nvrtc", "cuda-bindings and nvidia-cuda-nvrtc (extra `gpu`)"
    )


def _ok(nvrtc: Any, result: tuple[Any, ...], what: str) -> Any:
    """The value of an NVRTC call (every call returns ``(err, *values)``)."""
    err, *values = result
    if int(err) != 0:
        _, text = nvrtc.nvrtcGetErrorString(err)
        raise EngineError(f"nvrtc | {what} failed: {text.decode()}. Note: expected NVRTC_SUCCESS")
    return values[0] if len(values) == 1 else tuple(values)


def nvrtc_version() -> str:
    major, minor = _ok(_nvrtc(), _nvrtc().nvrtcVersion(), "nvrtcVersion")
    return f"{major}.{minor}"


def compile_cubin(arch: str, source: str = SOURCE) -> bytes:
    """Compile ``source`` for ``arch`` (``sm_90``) into a cubin; EngineError with NVRTC's log."""
    nvrtc = _nvrtc()
    prog = _ok(
        nvrtc,
        nvrtc.nvrtcCreateProgram(source.encode(), b"letterbox.cu", 0, [], []),
        "nvrtcCreateProgram",
    )
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++17", b"-default-device"]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            size = _ok(nvrtc, nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            text = b" " * int(size)
            _ok(nvrtc, nvrtc.nvrtcGetProgramLog(prog, text), "nvrtcGetProgramLog")
            raise EngineError(
                f"letterbox kernel | NVRTC could not compile it for {arch}: "
                f"{text.decode(errors='replace').strip()}. Note: expected the source to compile"
            )
        size = _ok(nvrtc, nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * int(size)
        _ok(nvrtc, nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


@functools.cache
def letterbox_cubin(arch: str, cache_dir: Path | None = None) -> bytes:
    """The letterbox cubin for ``arch``: from the disk cache, else compiled and stored."""
    key = hashlib.sha256(f"{SOURCE}\0{arch}\0{nvrtc_version()}".encode()).hexdigest()[:16]
    path = resolve_cache_dir(cache_dir) / "kernels" / f"letterbox-{arch}-{key}.cubin"
    if path.is_file():
        return path.read_bytes()
    log.info("compiling the letterbox kernel for %s with NVRTC %s", arch, nvrtc_version())
    cubin = compile_cubin(arch)
    try:
        atomic_write(path, cubin)
    except OSError as exc:  # a read-only cache only costs a compile per process
        log.warning("letterbox kernel | cannot cache %s (%s); compiled in memory only", path, exc)
    return cubin

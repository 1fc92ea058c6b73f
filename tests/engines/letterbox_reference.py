"""The letterbox kernel's arithmetic in numpy, to check its design without a GPU.

Each resize is a pair of weight matrices (output rows x source rows, output
columns x source columns) built exactly as ``engines/gpu/kernels.py``'s
``sample_area`` / ``sample_linear`` weigh source pixels; the GPU tests then
compare the kernel's output with this and with the CPU letterbox.
"""

from __future__ import annotations

import numpy as np

from streamfer.models.preprocess import PAD_VALUE, letterbox_geometry


def _area_weights(n_out: int, n_src: int, step: float) -> np.ndarray:
    w = np.zeros((n_out, n_src), dtype=np.float64)
    for i in range(n_out):
        f0, f1 = i * step, min(i * step + step, float(n_src))
        for s in range(int(np.floor(f0)), min(int(np.ceil(f1)), n_src)):
            w[i, s] = min(s + 1.0, f1) - max(float(s), f0)
    return w / w.sum(axis=1, keepdims=True)


def _linear_weights(n_out: int, n_src: int, step: float) -> np.ndarray:
    w = np.zeros((n_out, n_src), dtype=np.float64)
    for i in range(n_out):
        f = (i + 0.5) * step - 0.5
        s = int(np.floor(f))
        a = f - s
        if s < 0:
            s, a = 0, 0.0
        if s >= n_src - 1:
            s, a = n_src - 1, 0.0
        w[i, s] += 1.0 - a
        w[i, min(s + 1, n_src - 1)] += a
    return w


def resize_reference(
    image_rgb: np.ndarray, new_w: int, new_h: int, sx: float, sy: float, area: bool
) -> np.ndarray:
    """``[3, new_h, new_w]`` float64 levels, rounded and clipped to 0..255."""
    height, width = image_rgb.shape[:2]
    weights = _area_weights if area else _linear_weights
    wy, wx = weights(new_h, height, sy), weights(new_w, width, sx)
    planes = [wy @ image_rgb[:, :, c].astype(np.float64) @ wx.T for c in range(3)]
    return np.clip(np.rint(np.stack(planes)), 0, 255)


def letterbox_reference(image_rgb: np.ndarray, size: int) -> np.ndarray:
    """Float32 ``[3, size, size]`` in 0..1, as the kernel computes it from an RGB uint8 image."""
    height, width = image_rgb.shape[:2]
    lb, new_w, new_h = letterbox_geometry(width, height, size)
    out = np.full((3, size, size), float(PAD_VALUE))
    resized = resize_reference(
        image_rgb, new_w, new_h, width / new_w, height / new_h, lb.scale < 1.0
    )
    out[:, lb.pad_y : lb.pad_y + new_h, lb.pad_x : lb.pad_x + new_w] = resized
    return (out / 255.0).astype(np.float32)

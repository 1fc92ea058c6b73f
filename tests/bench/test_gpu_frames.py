"""The GPU frame benchmark's report, from numbers (the measuring needs a GPU)."""

from __future__ import annotations

from streamfer.bench.gpu_frames import (
    GpuFramesOptions,
    GpuFramesResult,
    SizeResult,
    gpu_frames_report,
)
from streamfer.bench.machine import probe_machine
from streamfer.bench.report import render_markdown


def test_the_report_names_the_card_the_targets_and_what_was_not_run() -> None:
    res = GpuFramesResult("NVIDIA H100 80GB HBM3 (79 GiB, sm_90)", 64, 2, "none")
    res.not_run.append("inference: TensorRT is not installed on this host")
    small = SizeResult(640, 360, [21000.0] * 3, [12000.0] * 3, [15000.0] * 3, 0.4, 600.0, 0.2)
    large = SizeResult(1920, 1080, [5000.0] * 3, [3900.0] * 3, [3950.0] * 3, 2.0, 90.0, 0.2)
    res.sizes += [small, large]
    text = render_markdown(gpu_frames_report(res, GpuFramesOptions(), "cmd", probe_machine()))
    assert "GPU frame path on NVIDIA H100 80GB HBM3" in text
    assert (
        "| decode + preprocess 640x360, per process | 15,000 frames/s | >= 10,000 | **met** |"
        in (text)
    )
    assert (
        "| decode + preprocess 1920x1080, per process | 3,950 frames/s | >= 4,000 | **MISSED** |"
        in (text)
    )
    assert "not run: inference: TensorRT is not installed on this host" in text
    assert "| not run |" in text  # the inference column

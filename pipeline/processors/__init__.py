"""Processors: per-kind decoding/features before the engine and results after it.

``make_processor(stream, runner, threads)`` builds the processor of a
configured stream; the interface is in :mod:`pipeline.processors.base`.
"""

from __future__ import annotations

from engines.base import Runner
from pipeline.config import StreamConfig
from pipeline.postprocess import labels_from_metadata
from pipeline.processors.base import Output, Prepared, Processor, Reject, Result

__all__ = ["Output", "Prepared", "Processor", "Reject", "Result", "make_processor"]


def make_processor(stream: StreamConfig, runner: Runner, threads: int = 2) -> Processor:
    """The built-in processor of ``stream``'s kind, wired to ``runner``'s tensors."""
    input_name = runner.input_specs[0].name
    output_name = runner.output_specs[0].name
    if stream.kind == "transaction":
        from pipeline.processors.transaction import TransactionProcessor

        return TransactionProcessor(stream, input_name, output_name)
    labels = labels_from_metadata(runner.metadata, runner.name)
    if stream.kind in ("sensor", "sensor-sample"):
        shape = runner.input_specs[0].shape[1:]
        window = (int(shape[0] or 100), int(shape[1] or 6)) if len(shape) == 2 else (100, 6)
        if stream.kind == "sensor-sample":
            from pipeline.processors.sample import SampleProcessor

            return SampleProcessor(stream, labels, input_name, output_name, window)
        from pipeline.processors.sensor import SensorProcessor

        return SensorProcessor(stream, labels, input_name, output_name, window)
    from engines.gpu import resolve_preprocess_device

    size = int(runner.metadata.get("streamfer.input_size", "256"))
    if resolve_preprocess_device(stream.preprocess.device, runner.info.kind) == "gpu":
        from engines.gpu import GpuFramePreprocessor
        from pipeline.processors.camera_gpu import GpuCameraProcessor

        spec = runner.input_specs[0]
        pre = GpuFramePreprocessor(
            size, spec.dtype, runner.max_batch, limits=stream.limits.codec_limits()
        )
        return GpuCameraProcessor(stream, labels, pre, output_name)
    from pipeline.processors.camera import CameraProcessor

    return CameraProcessor(stream, labels, size, threads, input_name, output_name)

"""Building a configured stream's processor: the built-in one of its kind (with a plug-in
postprocessor in place of its results step when the stream names one), or for ``kind:
custom`` the plug-in its ``processor`` names; and how its batches reach the model."""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from streamfer.engines.base import Runner, TensorSpec
from streamfer.engines.gpu import GpuFramePreprocessor, resolve_preprocess_device
from streamfer.errors import ConfigError, EngineError
from streamfer.models.detect import detect_layout
from streamfer.pipeline.config import StreamConfig
from streamfer.pipeline.config.records import SENSOR_WINDOW
from streamfer.pipeline.config.runtime import PREPROCESS_THREADS
from streamfer.pipeline.postprocess import detector_labels, labels_from_metadata
from streamfer.pipeline.processors import plugins
from streamfer.pipeline.processors.base import Postprocessor, Processor
from streamfer.pipeline.processors.camera import CameraProcessor
from streamfer.pipeline.processors.camera_gpu import GpuCameraProcessor
from streamfer.pipeline.processors.checks import PreparedCheck
from streamfer.pipeline.processors.context import ProcessorContext
from streamfer.pipeline.processors.sample import SampleProcessor
from streamfer.pipeline.processors.sensor import SensorProcessor
from streamfer.pipeline.processors.transaction import TransactionProcessor

if TYPE_CHECKING:
    from streamfer.pipeline.handoff import InferFn


def processor_context(
    stream: StreamConfig, runner: Runner, threads: int = PREPROCESS_THREADS
) -> ProcessorContext:
    """The context a plug-in of ``stream`` is built with (``config``: the raw mapping)."""
    return ProcessorContext(
        stream=stream.name,
        kind=stream.kind,
        model=stream.model,
        config=MappingProxyType(dict(stream.processor_config)),
        inputs=runner.input_specs,
        outputs=runner.output_specs,
        metadata=MappingProxyType(dict(runner.metadata)),
        max_batch=min(stream.batching.max_batch, runner.max_batch),
        limits=stream.limits.codec_limits(),
        threads=threads,
    )


def engine_wiring(processor: Processor, runner: Runner) -> tuple[InferFn, PreparedCheck]:
    """How ``processor``'s batches reach the model, and the contract check of its output.

    A processor with ``infer_with(runner)`` (e.g. GPU preprocessing) runs the model its
    own way on feeds that are its own, so only rows are checked; any other's feeds go
    to ``runner.infer`` and are checked against the model's inputs.
    """
    name = type(processor).__name__
    infer_with = getattr(processor, "infer_with", None)
    if callable(infer_with):
        return infer_with(runner), PreparedCheck(name, None)
    return runner.infer, PreparedCheck(name, runner.input_specs)


def make_processor(
    stream: StreamConfig, runner: Runner, threads: int = PREPROCESS_THREADS
) -> Processor:
    """The processor of ``stream``, wired to ``runner``'s tensors."""
    context = processor_context(stream, runner, threads)
    if stream.kind == "custom":
        if stream.processor is None:
            raise ConfigError(f"stream {stream.name} | kind custom without a processor")
        built: Processor = plugins.build(stream.processor, context, "processor")
        return built
    post: Postprocessor | None = None
    if stream.postprocessor is not None:
        post = plugins.build(stream.postprocessor, context, "postprocessor")
    input_name = runner.input_specs[0].name
    output_name = runner.output_specs[0].name
    if stream.kind == "transaction":
        return TransactionProcessor(stream, input_name, output_name, post)
    if stream.kind in ("sensor", "sensor-sample"):
        labels = labels_from_metadata(runner.metadata, runner.name) if post is None else []
        shape = runner.input_specs[0].shape[1:]
        rows, cols = SENSOR_WINDOW
        window = (int(shape[0] or rows), int(shape[1] or cols)) if len(shape) == 2 else (rows, cols)
        if stream.kind == "sensor-sample":
            return SampleProcessor(stream, labels, input_name, output_name, window, post)
        return SensorProcessor(stream, labels, input_name, output_name, window, post)
    labels = []
    if post is None:
        labels = detector_labels(runner.metadata, stream.detection.labels, stream.model)
        check_detector_output(runner.output_specs[0], labels, stream.model)
    spec = runner.input_specs[0]
    size = detector_input_size(spec, runner.metadata, stream.model)
    if resolve_preprocess_device(stream.preprocess.device, runner.info.kind) == "gpu":
        pre = GpuFramePreprocessor(size, spec.dtype, runner.max_batch)
        return GpuCameraProcessor(stream, labels, pre, output_name, post)
    return CameraProcessor(
        stream, labels, size, threads, input_name, output_name, post, np.dtype(spec.dtype)
    )


def detector_input_size(spec: TensorSpec, metadata: dict[str, str], model: str) -> int:
    """The side of a detector's square input: its fixed ``[N, 3, S, S]`` shape, else the
    metadata's ``streamfer.input_size`` or Ultralytics ``imgsz``."""
    dims = spec.shape[1:]
    if len(dims) != 3 or dims[0] not in (3, None):
        raise EngineError(
            f"{model} input {spec.name!r} | shape {spec.describe()}. "
            "Note: a detector takes [N, 3, S, S] (RGB, channels first)"
        )
    if dims[1] is not None and dims[1] == dims[2]:
        return int(dims[1])
    raw = metadata.get("streamfer.input_size") or metadata.get("imgsz", "")
    sides = {int(x) for x in raw.strip("[]() ").replace(",", " ").split() if x.isdigit()}
    if dims[1] is None and dims[2] is None and len(sides) == 1:
        return sides.pop()
    raise EngineError(
        f"{model} input {spec.name!r} | shape {spec.describe()}, input size metadata {raw!r}. "
        "Note: expected a square input, fixed in the model or given as streamfer.input_size"
    )


def check_detector_output(spec: TensorSpec, labels: list[str], model: str) -> None:
    """At start, not per batch: a detector output that cannot fit ``labels`` fails loudly."""
    dims = spec.shape[1:]
    if len(dims) == 2 and None not in dims:
        try:
            detect_layout((int(dims[0] or 0), int(dims[1] or 0)), len(labels))
        except EngineError:
            c = len(labels)
            raise EngineError(
                f"{model} output {spec.name!r} | {spec.describe()} does not fit {c} labels "
                f"{labels[:8]}{'...' if c > 8 else ''}. Note: expected [N, {4 + c}, A] or "
                f"[N, A, {4 + c}] (YOLOv8) or [N, A, {5 + c}] (YOLOv5); set detection.labels "
                "to the model's classes"
            ) from None

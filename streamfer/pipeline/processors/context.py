"""What a processor plug-in is built with: its stream, its configuration and its model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streamfer.engines.base import TensorSpec
from streamfer.errors import EngineError
from streamfer.pipeline.postprocess import labels_from_metadata
from streamfer.streams.codecs import CodecLimits


@dataclass(frozen=True)
class ProcessorContext:
    """Everything a processor may know about where it runs; ``Name(context)`` builds one.

    ``stream``/``kind``/``model``: the configured names; ``config``: the stream's
    ``processor_config``, as the processor's ``config_model`` parsed it (a mapping
    when it declares none); ``inputs``/``outputs``/``metadata``: the model's tensors
    (batch axis first, ``None``) and ONNX ``metadata_props``; ``max_batch``: the most
    rows one ``results`` call gets; ``limits``: the stream's record limits;
    ``threads``: ``runtime.preprocess_threads``, for a processor that decodes in a pool.
    """

    stream: str
    kind: str
    model: str
    config: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: Mapping[str, str]
    max_batch: int
    limits: CodecLimits
    threads: int = 1

    @property
    def input(self) -> TensorSpec:
        """The model's only input (EngineError when it has several)."""
        return self._only(self.inputs, "input")

    @property
    def output(self) -> TensorSpec:
        """The model's only output (EngineError when it has several)."""
        return self._only(self.outputs, "output")

    def _only(self, specs: tuple[TensorSpec, ...], what: str) -> TensorSpec:
        if len(specs) != 1:
            raise EngineError(
                f"{self.model} | has {len(specs)} {what}s {[s.name for s in specs]}. "
                f"Note: ProcessorContext.{what} is for single-{what} models; pick one "
                f"from ProcessorContext.{what}s by name"
            )
        return specs[0]

    def labels(self) -> list[str]:
        """The model's class labels: ONNX metadata ``streamfer.labels`` (a JSON list)."""
        return labels_from_metadata(self.metadata, self.model)

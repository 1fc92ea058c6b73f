"""Read what an ONNX file promises (I/O specs, metadata, hash) without running it.

Every engine starts from this: the ONNX Runtime runner reports specs before
activation, the TensorRT builder derives its optimisation profile from the
input shapes, the cache keys engines by the file's sha256, and
``streamfer engines inspect`` prints it.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from streamfer.engines.base import Runner, TensorSpec
from streamfer.errors import EngineError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class OnnxModelInfo:
    """An ONNX model as seen from outside: where, which, what goes in and out."""

    path: Path
    sha256: str
    size_bytes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str]
    opset: int
    producer: str
    node_count: int

    @property
    def name(self) -> str:
        """``streamfer.name`` from the metadata, else the file stem."""
        return self.metadata.get("streamfer.name") or self.path.stem


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_model_path(path: Path | str) -> Path:
    """The path as a Path, or EngineError naming it when it is not a readable file."""
    p = Path(path)
    if not p.exists():
        raise EngineError(f"{p} | no such file. Note: expected an ONNX model file (.onnx)")
    if not p.is_file():
        raise EngineError(f"{p} | not a regular file. Note: expected an ONNX model file (.onnx)")
    return p


def load_onnx(path: Path | str) -> onnx.ModelProto:
    """Parse an ONNX file (external data left on disk) or raise EngineError."""
    p = check_model_path(path)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types
        raise EngineError(
            f"{p} | not a readable ONNX model ({type(exc).__name__}: {exc}). "
            "Note: expected an ONNX ModelProto file (.onnx)"
        ) from exc
    if not model.graph.input or not model.graph.output:
        raise EngineError(
            f"{p} | the file parses but holds no graph inputs/outputs "
            f"({len(model.graph.input)} inputs, {len(model.graph.output)} outputs). "
            "Note: expected an ONNX model file (.onnx)"
        )
    return model


def _spec(path: Path, value: onnx.ValueInfoProto, *, is_input: bool) -> TensorSpec:
    ttype = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not ttype.HasField("shape"):
        raise EngineError(
            f"{path} tensor '{value.name}' | not a tensor with a known rank. "
            "Note: expected tensors with a batch axis first"
        )
    dims: list[int | None] = [
        d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim
    ]
    if not dims:
        raise EngineError(
            f"{path} tensor '{value.name}' | is a scalar. Note: expected a batch axis first"
        )
    if is_input and dims[0] is not None:
        raise EngineError(
            f"{path} input '{value.name}' | batch axis is fixed at {dims[0]}. "
            "Note: expected a dynamic (symbolic) first axis, e.g. export with dynamic_axes"
        )
    dims[0] = None
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type))
    return TensorSpec(value.name, dtype, tuple(dims))


def read_onnx_info(path: Path | str) -> OnnxModelInfo:
    """I/O specs, metadata_props and sha256 of an ONNX file."""
    model = load_onnx(path)
    p = Path(path)
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(
        _spec(p, v, is_input=True) for v in model.graph.input if v.name not in initializers
    )
    outputs = tuple(_spec(p, v, is_input=False) for v in model.graph.output)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxModelInfo(
        path=p,
        sha256=file_sha256(p),
        size_bytes=p.stat().st_size,
        inputs=inputs,
        outputs=outputs,
        metadata={prop.key: prop.value for prop in model.metadata_props},
        opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        node_count=len(model.graph.node),
    )


class OnnxFileRunner(Runner):
    """A runner whose specs and metadata come from its ONNX file, read on first use."""

    def __init__(self, onnx_path: Path | str, max_batch: int, name: str | None = None) -> None:
        path = Path(onnx_path)
        super().__init__(name or path.stem, max_batch)
        self.onnx_path = path

    @functools.cached_property
    def model_info(self) -> OnnxModelInfo:
        """The ONNX file's specs, metadata and sha256 (read once, then kept)."""
        return read_onnx_info(self.onnx_path)

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self.model_info.inputs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self.model_info.outputs

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.model_info.metadata)

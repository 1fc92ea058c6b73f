"""FP16 and INT8 for TensorRT 11: the precision lives in the ONNX graph.

TensorRT 11 networks are strongly typed (no ``BuilderFlag.FP16``/``INT8``, no
calibrators), so a lower precision means a different ONNX graph:

- ``fp16``: the graph is cast with NVIDIA ModelOpt AutoCast, or with
  onnxconverter-common's float16 converter when ModelOpt is absent;
- ``int8``: explicit Q/DQ nodes from ModelOpt quantization, calibrated on
  samples the caller provides.

Each converted graph is checked (it really holds FP16 tensors / Q/DQ nodes and
keeps the original inputs and outputs); a precision that cannot be produced
is an EngineError, never a silent FP32 build.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import onnx

from streamfer.engines.base import TensorSpec, check_precision
from streamfer.errors import EngineError

_AUTOCAST = "modelopt.onnx.autocast"
_CONVERTER = "onnxconverter_common.float16"
_QUANTIZE = "modelopt.onnx.quantization"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _version(distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def calibration_sha256(samples: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(samples):
        arr = np.ascontiguousarray(samples[name])
        digest.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def precision_recipe(precision: str, calibration: Mapping[str, np.ndarray] | None = None) -> str:
    """Which tool will produce ``precision`` here (part of the cache key); EngineError if none."""
    check_precision(precision)
    if precision == "fp32":
        return ""
    if precision == "fp16":
        if _importable(_AUTOCAST):
            return f"modelopt-autocast {_version('nvidia-modelopt')}"
        if _importable(_CONVERTER):
            return f"onnxconverter-common {_version('onnxconverter-common')}"
        raise EngineError(
            "precision fp16 | no ONNX FP16 converter is installed (tried modelopt.onnx.autocast, "
            "onnxconverter_common). Note: TensorRT 11 builds FP16 only from an FP16 ONNX graph; "
            "expected `pip install 'nvidia-modelopt[onnx]'` (or onnxconverter-common)"
        )
    if not _importable(_QUANTIZE):
        raise EngineError(
            "precision int8 | modelopt.onnx.quantization is not installed. Note: TensorRT 11 "
            "builds INT8 only from explicit Q/DQ nodes; expected `pip install "
            "'nvidia-modelopt[onnx]'`"
        )
    if not calibration:
        raise EngineError(
            "precision int8 | no calibration samples given. Note: expected an .npz with one "
            "array per model input (--calibration FILE.npz), a few hundred representative rows"
        )
    calib = calibration_sha256(calibration)[:16]
    return f"modelopt-quantize {_version('nvidia-modelopt')} calib={calib}"


def load_calibration(path: Path | str, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Calibration samples from an ``.npz`` keyed by input name, checked against the specs."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as data:
            samples = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"{p} | calibration file unreadable ({exc}). "
            "Note: expected an .npz with one array per model input"
        ) from exc
    wanted = {s.name: s for s in inputs}
    if set(samples) != set(wanted):
        raise EngineError(
            f"{p} | calibration arrays {sorted(samples)}. Note: expected exactly {sorted(wanted)}"
        )
    for name, arr in samples.items():
        spec = wanted[name]
        tail_ok = len(arr.shape) == len(spec.shape) and all(
            w is None or w == g for w, g in zip(spec.shape[1:], arr.shape[1:], strict=False)
        )
        if arr.dtype != spec.dtype or not tail_ok or arr.shape[0] < 1:
            raise EngineError(
                f"{p} calibration '{name}' | got {arr.dtype.name} {list(arr.shape)}. "
                f"Note: expected {spec.describe()}"
            )
    return samples


def _io_signature(model: onnx.ModelProto) -> list[tuple[str, int]]:
    inits = {i.name for i in model.graph.initializer}
    values = [v for v in model.graph.input if v.name not in inits] + list(model.graph.output)
    return [(v.name, v.type.tensor_type.elem_type) for v in values]


def _check_io_kept(before: list[tuple[str, int]], converted: onnx.ModelProto, what: str) -> None:
    after = _io_signature(converted)
    if before != after:
        raise EngineError(
            f"{what} | the converted graph changed its inputs/outputs {before} -> {after}. "
            "Note: expected the original names and dtypes kept (keep_io_types)"
        )


def count_fp16_tensors(model: onnx.ModelProto) -> int:
    """FP16 initializers plus Casts to FP16: zero means the graph is still FP32."""
    half = onnx.TensorProto.FLOAT16
    inits = sum(1 for i in model.graph.initializer if i.data_type == half)
    casts = sum(
        1
        for n in model.graph.node
        if n.op_type == "Cast" and any(a.name == "to" and a.i == half for a in n.attribute)
    )
    return inits + casts


def count_qdq_nodes(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))


def convert_fp16(src: Path, dst: Path) -> Path:
    """Cast an FP32 graph to FP16 (I/O types kept) and save it at ``dst``."""
    original = onnx.load(str(src))
    before = _io_signature(original)  # converters may edit the model they are given
    if _importable(_AUTOCAST):
        autocast = importlib.import_module(_AUTOCAST)
        converted = autocast.convert_to_mixed_precision(
            onnx_path=str(src), low_precision_type="fp16", keep_io_types=True
        )
    elif _importable(_CONVERTER):
        converter = importlib.import_module(_CONVERTER)
        converted = converter.convert_float_to_float16(original, keep_io_types=True)
    else:
        precision_recipe("fp16")  # raises the install hint
        raise AssertionError("unreachable")
    if count_fp16_tensors(converted) == 0:
        raise EngineError(
            f"{src} | FP16 conversion produced no FP16 tensors. "
            "Note: expected an FP16 graph; refusing to build FP32 under an fp16 label"
        )
    _check_io_kept(before, converted, f"{src} fp16")
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(converted, str(dst))
    return dst


def quantize_int8(src: Path, dst: Path, calibration: Mapping[str, np.ndarray]) -> Path:
    """Insert calibrated Q/DQ nodes with ModelOpt and save the graph at ``dst``."""
    precision_recipe("int8", calibration)  # raises when ModelOpt or samples are missing
    quantization = importlib.import_module(_QUANTIZE)
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantization.quantize(
        onnx_path=str(src),
        quantize_mode="int8",
        calibration_data=dict(calibration),
        output_path=str(dst),
    )
    if not dst.exists():
        raise EngineError(f"{src} | ModelOpt wrote no quantized model. Note: expected {dst}")
    converted = onnx.load(str(dst))
    if count_qdq_nodes(converted) == 0:
        raise EngineError(
            f"{src} | quantization produced no Q/DQ nodes. "
            "Note: expected explicit INT8 Q/DQ; refusing to build FP32 under an int8 label"
        )
    _check_io_kept(_io_signature(onnx.load(str(src))), converted, f"{src} int8")
    return dst


def prepare_onnx(
    src: Path, precision: str, work_dir: Path, calibration: Mapping[str, np.ndarray] | None
) -> Path:
    """The ONNX file TensorRT should parse for ``precision``."""
    check_precision(precision)
    if precision == "fp32":
        return src
    dst = work_dir / f"{src.stem}.{precision}.onnx"
    if precision == "fp16":
        return convert_fp16(src, dst)
    return quantize_int8(src, dst, calibration or {})

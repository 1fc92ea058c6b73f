"""On-disk cache of serialized TensorRT engines.

An engine runs only on the TensorRT build and GPU architecture it was built
for, so an entry is keyed by everything that decides what gets built: the ONNX
file's sha256, the TensorRT version, the GPU's compute capability, the
precision (and the recipe that produced its graph) and the batch profile.
Each ``.engine`` has a ``.json`` sidecar recording its key and the engine's own
sha256; an entry whose sidecar is missing, different (foreign) or whose bytes
do not hash to the recorded value (stale, truncated) is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamfer.engines.base import TensorSpec
from streamfer.engines.host import atomic_write
from streamfer.errors import EngineError

log = logging.getLogger(__name__)

SCHEMA = "streamfer.engine-cache.v1"


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile's batch sizes: min <= opt <= max."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise EngineError(
                f"batch profile | min={self.min} opt={self.opt} max={self.max} is invalid. "
                "Note: expected 1 <= min <= opt <= max"
            )

    @classmethod
    def for_max(cls, max_batch: int, *, opt: int | None = None, min_batch: int = 1) -> BatchProfile:
        """Profile up to ``max_batch``; opt defaults to max (the pipeline fills batches)."""
        return cls(min_batch, max_batch if opt is None else opt, max_batch)

    def shapes(self, spec: TensorSpec) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of one input; its non-batch axes must be fixed."""
        tail = spec.shape[1:]
        if any(d is None for d in tail):
            raise EngineError(
                f"input '{spec.name}' | non-batch axes are dynamic ({spec.describe()}). "
                "Note: expected only the batch axis dynamic for a TensorRT profile"
            )
        fixed = tuple(int(d) for d in tail if d is not None)
        return (self.min, *fixed), (self.opt, *fixed), (self.max, *fixed)


@dataclass(frozen=True)
class EngineKey:
    """Everything that decides which engine gets built."""

    onnx_sha256: str
    tensorrt_version: str
    compute_capability: str
    precision: str
    recipe: str  # how the graph was cast: "" for fp32, converter + version otherwise
    profile: BatchProfile

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheEntry:
    engine_path: Path
    meta_path: Path
    meta: dict[str, Any]


class EngineCache:
    """Engines under ``root``: ``<model>-<precision>-<digest>.engine`` + ``.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def engine_path(self, key: EngineKey, model: str) -> Path:
        return self.root / f"{model}-{key.precision}-{key.digest}.engine"

    def timing_cache_path(self, tensorrt_version: str, compute_capability: str) -> Path:
        """One timing cache per TensorRT version and GPU architecture, shared by models."""
        return self.root / f"timing-trt{tensorrt_version}-sm{compute_capability}.timing"

    def load(self, key: EngineKey, model: str) -> bytes | None:
        """The cached engine for ``key``, or None (absent, foreign or stale: rebuild)."""
        path = self.engine_path(key, model)
        meta_path = path.with_suffix(".json")
        if not path.exists():
            return None
        reason = self._reject_reason(key, path, meta_path)
        if reason is not None:
            log.warning("engine cache: not loading %s (%s); it will be rebuilt", path, reason)
            return None
        return path.read_bytes()

    def _reject_reason(self, key: EngineKey, path: Path, meta_path: Path) -> str | None:
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            return "no sidecar .json"
        except (OSError, ValueError) as exc:
            return f"unreadable sidecar: {exc}"
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            return f"sidecar schema {meta.get('schema') if isinstance(meta, dict) else None!r}"
        recorded = meta.get("key")
        if recorded != key.as_dict():
            return f"built for another key {recorded}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != meta.get("engine_sha256"):
            return "engine bytes do not match the recorded sha256"
        return None

    def store(self, key: EngineKey, model: str, engine: bytes, extra: dict[str, Any]) -> Path:
        """Write engine then sidecar (each atomically); return the engine path."""
        path = self.engine_path(key, model)
        meta = {
            "schema": SCHEMA,
            "model": model,
            "key": key.as_dict(),
            "engine_sha256": hashlib.sha256(engine).hexdigest(),
            "engine_bytes": len(engine),
            **extra,
        }
        atomic_write(path, engine)
        atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())
        return path

    def invalidate(self, path: Path) -> None:
        """Remove an entry (engine and sidecar) TensorRT refused to deserialize."""
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

    def entries(self, onnx_sha256: str | None = None) -> list[CacheEntry]:
        """Engines with a readable sidecar, optionally only those built from one ONNX file."""
        found: list[CacheEntry] = []
        if not self.root.is_dir():
            return found
        for meta_path in sorted(self.root.glob("*.json")):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
                continue
            if onnx_sha256 is not None and meta.get("key", {}).get("onnx_sha256") != onnx_sha256:
                continue
            found.append(CacheEntry(meta_path.with_suffix(".engine"), meta_path, meta))
        return found

"""ONNX Runtime runner: one session shared by all threads (``run`` is thread-safe)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from streamfer.engines.base import DEFAULT_MAX_BATCH, EngineInfo
from streamfer.engines.onnx_model import OnnxFileRunner
from streamfer.engines.onnxruntime.loader import CUDA, SessionFromOnnx, SessionSettings
from streamfer.errors import EngineError


class OnnxRuntimeRunner(OnnxFileRunner):
    """Runs an ONNX file on ONNX Runtime; nothing is read or loaded before ``activate()``."""

    def __init__(
        self,
        onnx_path: Path | str,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        settings: SessionSettings | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(onnx_path, max_batch, name)
        self._load = SessionFromOnnx(self.onnx_path, settings)
        self._session: ort.InferenceSession | None = None
        self._output_names: list[str] = []

    @property
    def info(self) -> EngineInfo:
        """Providers are the session's own once active; the requested ones before."""
        if self._session is not None:
            providers = tuple(self._session.get_providers())
        else:
            providers = tuple(self._load.settings.providers or ())
        device = "cuda:0" if CUDA in providers else "cpu"
        return EngineInfo("onnxruntime", "fp32", device, providers)

    def _activate_impl(self) -> None:
        specs = self.model_info  # fail on a bad file before creating a session
        session = self._load()
        names = [o.name for o in session.get_outputs()]
        if names != [o.name for o in specs.outputs]:
            raise EngineError(
                f"{self.onnx_path} | onnxruntime reports outputs {names}. "
                f"Note: expected the graph outputs {[o.name for o in specs.outputs]}"
            )
        self._output_names = names
        self._session = session

    def _deactivate_impl(self) -> None:
        self._session = None

    def _infer_impl(self, feeds: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:  # deactivated by another thread mid-call
            raise EngineError(f"{self.name} | runner was deactivated. Note: expected it active")
        outputs = session.run(self._output_names, feeds if isinstance(feeds, dict) else dict(feeds))
        return dict(zip(self._output_names, outputs, strict=True))

"""Inference engines behind one runner interface (TensorRT on GPUs, ONNX Runtime on CPU).

``create_runner(path, target=...)`` picks and creates a lazy runner; use it as a
context manager and call ``infer(feeds)``.
"""

from streamfer.engines.base import EngineInfo, Runner, TensorSpec
from streamfer.engines.select import create_runner

__all__ = ["EngineInfo", "Runner", "TensorSpec", "create_runner"]
